//! Decentralised (JWT) authentication for tests, without the `nsc` tool: an operator, an
//! account and a user, their JWTs signed with NKeys as nats-server expects, the server config
//! that trusts the operator (a memory resolver preloaded with the account), and the user's
//! `.creds` file.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use nkeys::KeyPair;
use serde_json::{Value, json};

/// An operator with one account and one user of that account.
pub struct Operator {
    /// The server config lines that trust the operator and know the account.
    pub server_config: String,
    /// The user's `.creds` file: its JWT and its NKey seed.
    pub user_creds: String,
}

impl Operator {
    /// A user that may publish and subscribe to `subjects` only.
    pub fn with_user(subjects: &[String]) -> Self {
        let operator = KeyPair::new_operator();
        let account = KeyPair::new_account();
        let user = KeyPair::new_user();
        let operator_jwt = sign(
            &operator,
            &operator.public_key(),
            "test-operator",
            json!({ "type": "operator", "version": 2 }),
        );
        let account_jwt = sign(
            &operator,
            &account.public_key(),
            "oort",
            json!({
                // -1 is "no limit"; absent limits would be zero connections.
                "limits": {
                    "subs": -1, "data": -1, "payload": -1, "imports": -1, "exports": -1,
                    "wildcards": true, "conn": -1, "leaf": -1
                },
                "default_permissions": { "pub": {}, "sub": {} },
                "type": "account",
                "version": 2
            }),
        );
        let user_jwt = sign(
            &account,
            &user.public_key(),
            "oort-node",
            json!({
                "pub": { "allow": subjects },
                "sub": { "allow": subjects },
                "subs": -1, "data": -1, "payload": -1,
                "type": "user",
                "version": 2
            }),
        );
        let seed = user.seed().expect("a user seed");
        Self {
            server_config: format!(
                "operator: {operator_jwt:?}\nresolver: MEMORY\nresolver_preload: {{\n  {}: {account_jwt:?}\n}}\n",
                account.public_key()
            ),
            user_creds: format!(
                "-----BEGIN NATS USER JWT-----\n{user_jwt}\n------END NATS USER JWT------\n\n\
                 ************************* IMPORTANT *************************\n\
                 NKEY Seed printed below can be used to sign and prove identity.\n\n\
                 -----BEGIN USER NKEY SEED-----\n{seed}\n------END USER NKEY SEED------\n"
            ),
        }
    }
}

/// A JWT for `subject`, issued and signed by `issuer`.
fn sign(issuer: &KeyPair, subject: &str, name: &str, nats: Value) -> String {
    let header = json!({ "typ": "JWT", "alg": "ed25519-nkey" });
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("time after 1970")
        .as_secs();
    let claims = json!({
        "jti": format!("{:032X}", rand::random::<u128>()),
        "iat": now,
        "iss": issuer.public_key(),
        "name": name,
        "sub": subject,
        "nats": nats,
    });
    let signed = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let signature = issuer.sign(signed.as_bytes()).expect("sign a JWT");
    format!("{signed}.{}", URL_SAFE_NO_PAD.encode(signature))
}

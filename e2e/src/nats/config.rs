//! nats-server configuration for tests, as the text of its config file: users with subject
//! permissions, a token, NKey users, and a TLS block (mutual TLS with `verify`).

use crate::pki::TestPki;

/// Who may publish or subscribe to what.
#[derive(Clone, Debug)]
pub enum Subjects {
    /// Only these subjects.
    Allow(Vec<String>),
    /// Everything but these subjects.
    Deny(Vec<String>),
}

impl Subjects {
    fn text(&self) -> String {
        match self {
            Self::Allow(subjects) => quoted_list(subjects),
            Self::Deny(subjects) => format!("{{ deny: {} }}", quoted_list(subjects)),
        }
    }
}

/// A user with a password and permissions.
#[derive(Clone, Debug)]
pub struct User {
    /// The user name.
    pub user: String,
    /// The password.
    pub password: String,
    /// What it may publish to.
    pub publish: Subjects,
    /// What it may subscribe to.
    pub subscribe: Subjects,
}

/// `authorization { users = [...] }` for users with passwords and permissions.
pub fn users(users: &[User]) -> String {
    let entries: Vec<String> = users
        .iter()
        .map(|u| {
            format!(
                "    {{ user: {:?}, password: {:?}, permissions: {{ publish: {}, subscribe: {} }} }}",
                u.user,
                u.password,
                u.publish.text(),
                u.subscribe.text()
            )
        })
        .collect();
    format!(
        "authorization {{\n  users = [\n{}\n  ]\n}}\n",
        entries.join("\n")
    )
}

/// `authorization { token }`.
pub fn token(token: &str) -> String {
    format!("authorization {{\n  token: {token:?}\n}}\n")
}

/// `authorization { users = [ { nkey } ] }`: users known by their NKey public keys.
pub fn nkey_users(public_keys: &[String]) -> String {
    let entries: Vec<String> = public_keys
        .iter()
        .map(|key| format!("    {{ nkey: {key:?} }}"))
        .collect();
    format!(
        "authorization {{\n  users = [\n{}\n  ]\n}}\n",
        entries.join("\n")
    )
}

/// A `tls` block serving `pki`'s server certificate; with `verify`, clients must present a
/// certificate the test CA signed.
pub fn tls(pki: &TestPki, verify: bool) -> String {
    format!(
        "tls {{\n  cert_file: {:?}\n  key_file: {:?}\n  ca_file: {:?}\n  verify: {verify}\n  timeout: 2\n}}\n",
        pki.server_cert.display().to_string(),
        pki.server_key.display().to_string(),
        pki.ca_file.display().to_string(),
    )
}

fn quoted_list(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|item| format!("{item:?}")).collect();
    format!("[{}]", quoted.join(", "))
}

//! https callbacks through the real binary, against a backend whose certificate was signed by
//! a CA made in the test: trusted with `callback.ca_file`, refused without it (502, and the log
//! says the certificate is not trusted), and a `callback.ca_file` that cannot be used stops the
//! start with 64.

use oort_e2e::process::{OortProcess, TempConfig, run_oort};
use oort_e2e::{CallbackKind, TIMEOUT, TestBackend, WsClient};
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_tungstenite::tungstenite::Error as WsError;

use crate::support::{config_for, describe};

/// A CA made for one test (its certificate as PEM), and a TLS server config for 127.0.0.1
/// whose certificate it signed.
fn ca_and_backend_tls() -> (String, rustls::ServerConfig) {
    let mut ca_params = CertificateParams::new(Vec::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_key = KeyPair::generate().unwrap();
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);

    let server_key = KeyPair::generate().unwrap();
    let server_cert = CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .unwrap()
        .signed_by(&server_key, &issuer)
        .unwrap();
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![server_cert.der().clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(server_key.serialize_der())),
        )
        .unwrap();
    (ca_cert.pem(), tls)
}

/// Starts `oort` with every callback at `backend`, plus `--set` flags.
fn spawn_gateway(config: &TempConfig, sets: &[String]) -> OortProcess {
    let mut args = vec!["--config", config.path()];
    for set in sets {
        args.extend(["--set", set.as_str()]);
    }
    OortProcess::spawn(&args, &[])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_callbacks_reach_a_backend_signed_by_the_ca_in_callback_ca_file() {
    let (ca_pem, tls) = ca_and_backend_tls();
    let backend = TestBackend::start_tls(tls).await;
    assert!(backend.url().starts_with("https://"), "{}", backend.url());
    let config = TempConfig::new(&config_for(&backend, ""));
    let ca_file = config.dir().join("ca.pem");
    std::fs::write(&ca_file, ca_pem).unwrap();
    let oort = spawn_gateway(
        &config,
        &[format!("callback.ca_file={}", ca_file.display())],
    );
    let addr = oort.listen_addr("client", TIMEOUT).await;

    let url = format!("ws://{addr}/connect?key=secure&first=hello");
    let (mut client, _) = WsClient::connect_with(&url, &[])
        .await
        .unwrap_or_else(|err| panic!("connect failed: {err}\n{}", oort.logs().join("\n")));
    assert_eq!(client.recv_text().await, "hello");
    backend
        .wait_for(CallbackKind::Establish, "secure", 1, TIMEOUT)
        .await;
    client.send_text("over tls").await;
    let received = backend
        .wait_for(CallbackKind::Receive, "secure", 1, TIMEOUT)
        .await;
    assert_eq!(received[0].body, "over tls");
    client.close(1000).await;
    backend
        .wait_for(CallbackKind::Close, "secure", 1, TIMEOUT)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_ca_an_https_backend_is_refused_with_502_and_the_log_says_why() {
    let (_, tls) = ca_and_backend_tls();
    let backend = TestBackend::start_tls(tls).await;
    let config = TempConfig::new(&config_for(&backend, ""));
    let oort = spawn_gateway(&config, &[]);
    let addr = oort.listen_addr("client", TIMEOUT).await;

    let url = format!("ws://{addr}/connect?key=untrusted");
    match WsClient::connect_with(&url, &[]).await {
        Err(WsError::Http(response)) => assert_eq!(response.status(), 502),
        Err(other) => panic!("connect failed without an HTTP answer: {other}"),
        Ok(_) => panic!("a backend signed by an unknown CA was trusted"),
    }
    let line = oort.wait_for_line("connect callback failed", TIMEOUT).await;
    assert!(line.contains("UnknownIssuer"), "{line}");
    assert!(
        line.contains("certificate is not trusted") && line.contains("callback.ca_file"),
        "{line}"
    );
    assert!(
        backend.recorded().is_empty(),
        "no request got past the handshake"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unusable_callback_ca_file_stops_the_start_and_check_config_with_64() {
    let config = TempConfig::new("listen: 127.0.0.1:0\n");
    let garbage = config.dir().join("garbage.pem");
    std::fs::write(&garbage, "not a certificate\n").unwrap();
    let missing = config.dir().join("missing.pem");
    for (path, reason) in [
        (&missing, "cannot read the file"),
        (&garbage, "no PEM certificate"),
    ] {
        let set = format!("callback.ca_file={}", path.display());
        let runs = [
            run_oort(&["--config", config.path(), "--set", &set], &[], TIMEOUT).await,
            run_oort(
                &["check-config", config.path()],
                &[("OORT_CALLBACK__CA_FILE", path.to_str().unwrap())],
                TIMEOUT,
            )
            .await,
        ];
        for output in runs {
            assert_eq!(output.status.code(), Some(64), "{}", describe(&output));
            let stderr = String::from_utf8_lossy(&output.stderr);
            for needle in ["`callback.ca_file`", path.to_str().unwrap(), reason] {
                assert!(stderr.contains(needle), "no {needle:?} in {stderr}");
            }
        }
    }
}

//! `oort drain`: asks a running gateway to drain (`POST /v1/drain`, with the API token as the
//! bearer token when there is one) and waits until its listener stops answering, so a
//! Kubernetes preStop hook returns only once the pod takes no new clients.

use std::time::Duration;

use anyhow::Context;
use rustls::RootCertStore;

/// What `oort drain` needs besides its flags; `main` gathers it from the environment.
pub(crate) struct DrainRequest<'a> {
    /// The gateway's API base URL.
    pub url: &'a str,
    /// How long the listener may keep answering.
    pub timeout: Duration,
    /// `$OORT_API_TOKEN`, when set and not empty.
    pub token: Option<String>,
    /// Roots trusted when `url` is https.
    pub roots: RootCertStore,
}

pub(crate) async fn request(request: DrainRequest<'_>) -> anyhow::Result<()> {
    let DrainRequest {
        url,
        timeout,
        token,
        roots,
    } = request;
    let http = oort_gateway::tls::client_builder(roots)?
        .timeout(Duration::from_secs(5))
        .build()?;
    let mut drain = http.post(format!("{url}/v1/drain"));
    if let Some(token) = token {
        drain = drain.bearer_auth(token);
    }
    let response = drain
        .send()
        .await
        .with_context(|| format!("cannot reach {url}"))?;
    anyhow::ensure!(
        response.status().is_success(),
        "the gateway refused the drain: {}",
        response.status()
    );
    let deadline = tokio::time::Instant::now() + timeout;
    while tokio::time::Instant::now() < deadline {
        // The listener closes once the drain stops accepting; until then readiness is false.
        if http.get(format!("{url}/livez")).send().await.is_err() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    anyhow::bail!("the gateway still answers after {timeout:?}")
}

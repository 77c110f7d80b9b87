//! `oort drain`: asks a running gateway to drain (`POST /v1/drain`, with `$OORT_API_TOKEN` as
//! the bearer token when set) and waits until its listener stops answering, so a Kubernetes
//! preStop hook returns only once the pod takes no new clients.

use std::time::Duration;

use anyhow::Context;

pub(crate) async fn request(url: &str, timeout: Duration) -> anyhow::Result<()> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()?;
    let mut drain = http.post(format!("{url}/v1/drain"));
    if let Ok(token) = std::env::var("OORT_API_TOKEN")
        && !token.is_empty()
    {
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

//! The channels a connect callback puts a new session in: `X-Oort-Channels`, a comma-separated
//! list (the header may repeat). Checked before the session is registered, so a backend's
//! mistake refuses the connect (502) rather than leaving a session half-subscribed.

use http::HeaderValue;
use oort_common::SessionKey;
use oort_common::channel::check_channel_name;
use tracing::warn;

use crate::state::AppState;

/// The header the connect callback names channels in.
pub(crate) const CHANNELS_HEADER: &str = "x-oort-channels";

/// The channels named in the callback's answer, checked against the names' syntax and the
/// limits; the error says what is wrong.
pub(crate) fn named(values: &[HeaderValue], state: &AppState) -> Result<Vec<String>, String> {
    let mut channels = Vec::new();
    for value in values {
        let text = value
            .to_str()
            .map_err(|_| "X-Oort-Channels is not ASCII".to_owned())?;
        for name in text.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            check_channel_name(name).map_err(|err| format!("X-Oort-Channels: {err}"))?;
            if !channels.iter().any(|c| c == name) {
                channels.push(name.to_owned());
            }
        }
    }
    let limit = state
        .config
        .channels
        .max_per_session
        .min(state.config.channels.max_per_request);
    if channels.len() > limit {
        return Err(format!(
            "X-Oort-Channels names {} channels; at most {limit} are allowed (channels.max_per_session, channels.max_per_request)",
            channels.len()
        ));
    }
    Ok(channels)
}

/// Puts a session that just registered in its channels. The session stays connected if that
/// fails (the cluster could not commit this node's interest in time): it is in the channels
/// here, and the failure is logged.
pub(crate) async fn join(state: &AppState, key: &SessionKey, channels: &[String]) {
    if channels.is_empty() {
        return;
    }
    let statuses = state
        .router
        .subscribe(std::slice::from_ref(key), channels, true)
        .await;
    if let Some(status) = statuses.first().filter(|status| !status.is_success()) {
        warn!(
            status = status.as_str(),
            "the session's channels from the connect callback were not all joined"
        );
    }
}

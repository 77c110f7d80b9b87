//! Channel names: what a backend may call a channel, checked wherever one enters (the connect
//! callback's answer, `/v1/subscribe`, `/v1/publish`).
//!
//! A channel name becomes part of a NATS subject (`oort.<cluster>.chan.<name>`) and of a URL
//! path (`/v1/channels/{name}`), so it is restricted to characters that are safe in both: ASCII
//! letters and digits and `_ - : = @ +`, in dot-separated parts that are never empty.

/// The longest channel name, in bytes.
pub const MAX_CHANNEL_BYTES: usize = 128;

/// Checks a channel name; the error says what is wrong with it.
pub fn check_channel_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("a channel name cannot be empty".to_owned());
    }
    if name.len() > MAX_CHANNEL_BYTES {
        return Err(format!(
            "a channel name has at most {MAX_CHANNEL_BYTES} bytes (this one has {})",
            name.len()
        ));
    }
    if let Some(bad) = name.chars().find(|c| {
        !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | ':' | '=' | '@' | '+' | '.'))
    }) {
        return Err(format!(
            "{name:?}: {bad:?} is not allowed in a channel name (use letters, digits and _ - : = @ + .)"
        ));
    }
    if name.split('.').any(str::is_empty) {
        return Err(format!(
            "{name:?}: a dot must separate two non-empty parts of a channel name"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_safe_in_subjects_and_paths_pass() {
        for name in [
            "room",
            "room.42",
            "user:42",
            "a-b_c=d@e+f",
            &"x".repeat(128),
        ] {
            assert_eq!(check_channel_name(name), Ok(()), "{name}");
        }
    }

    #[test]
    fn wildcards_separators_and_oversized_names_are_refused() {
        for name in [
            "",
            "a b",
            "a*",
            "a.>",
            ".a",
            "a.",
            "a..b",
            "a/b",
            "é",
            &"x".repeat(129),
        ] {
            assert!(check_channel_name(name).is_err(), "{name:?} passed");
        }
    }
}

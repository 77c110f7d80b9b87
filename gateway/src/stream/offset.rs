//! Durable Streams offsets for session streams, and the `Stream-Cursor` of live reads.
//!
//! An offset is `<session id>_<position>`, both as 16 lowercase hex digits: fixed width, so
//! offsets sort as strings as they do as numbers (the protocol asks for lexicographic order),
//! and the id makes an offset of one session meaningless for another that reused its key.

use std::time::{SystemTime, UNIX_EPOCH};

use oort_common::cluster::StreamPosition;

/// Formats the offset after message `seq` of session `id`.
pub(crate) fn format(id: u64, seq: u64) -> String {
    format!("{id:016x}_{seq:016x}")
}

/// Why an offset is refused.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum OffsetError {
    /// Not an offset at all (400).
    Malformed,
    /// An offset of another session (400).
    OtherSession,
}

/// Reads an `offset` parameter (absent: the start) for session `id`.
pub(crate) fn parse(text: Option<&str>, id: u64) -> Result<StreamPosition, OffsetError> {
    let Some(text) = text else {
        return Ok(StreamPosition::Start);
    };
    match text {
        "-1" => return Ok(StreamPosition::Start),
        "now" => return Ok(StreamPosition::Now),
        _ => {}
    }
    let (session, seq) = text.split_once('_').ok_or(OffsetError::Malformed)?;
    let hex = |part: &str| {
        (part.len() == 16 && part.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
            .then(|| u64::from_str_radix(part, 16).ok())
            .flatten()
            .ok_or(OffsetError::Malformed)
    };
    let (session, seq) = (hex(session)?, hex(seq)?);
    if session != id {
        return Err(OffsetError::OtherSession);
    }
    Ok(StreamPosition::After(seq))
}

/// Seconds in one cursor interval, and its epoch (2024-10-09T00:00:00Z), as the protocol
/// recommends (section 10.1).
const CURSOR_INTERVAL_SECS: u64 = 20;
const CURSOR_EPOCH_SECS: u64 = 1_728_432_000;

/// The `Stream-Cursor` of a live response: the current interval number, or, when the client
/// already has that one (or a later one), a later one still, so cursors never repeat.
pub(crate) fn cursor(client: Option<&str>) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs());
    let current = now.saturating_sub(CURSOR_EPOCH_SECS) / CURSOR_INTERVAL_SECS;
    let client = client.and_then(|text| text.parse::<u64>().ok());
    match client {
        // Jitter of 1 to 180 intervals (20 s to an hour), from the clock's low bits.
        Some(client) if client >= current => {
            let jitter = 1 + u64::from(
                SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |since| since.subsec_nanos())
                    % 180,
            );
            client.saturating_add(jitter).to_string()
        }
        _ => current.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_sort_as_their_positions_do() {
        let offsets: Vec<String> = [0, 9, 10, 255, 4096].map(|seq| format(42, seq)).to_vec();
        let mut sorted = offsets.clone();
        sorted.sort();
        assert_eq!(sorted, offsets);
        assert_eq!(parse(Some(&offsets[2]), 42), Ok(StreamPosition::After(10)));
    }

    #[test]
    fn special_malformed_and_foreign_offsets() {
        assert_eq!(parse(None, 1), Ok(StreamPosition::Start));
        assert_eq!(parse(Some("-1"), 1), Ok(StreamPosition::Start));
        assert_eq!(parse(Some("now"), 1), Ok(StreamPosition::Now));
        for bad in [
            "",
            "12",
            "x_y",
            "000000000000002a_1",
            "000000000000002A_0000000000000001",
        ] {
            assert_eq!(parse(Some(bad), 42), Err(OffsetError::Malformed), "{bad}");
        }
        assert_eq!(
            parse(Some(&format(43, 1)), 42),
            Err(OffsetError::OtherSession)
        );
    }

    #[test]
    fn cursors_move_past_the_clients() {
        let now: u64 = cursor(None).parse().unwrap();
        let next: u64 = cursor(Some(&now.to_string())).parse().unwrap();
        assert!(next > now);
        let far: u64 = cursor(Some("99999999999")).parse().unwrap();
        assert!(far > 99_999_999_999);
        assert_eq!(cursor(Some("1")), now.to_string());
    }
}

//! Framing inside one NATS message: a bincode header followed by a payload that is never
//! re-encoded, and several such records joined into one message.

use bytes::Bytes;
use serde::Serialize;

use crate::wire::{self, DecodeError};

/// `[header length: u32 LE][header (bincode)][payload]`.
pub fn encode_framed<T: Serialize>(header: &T, payload: &[u8]) -> Vec<u8> {
    let header = wire::encode(header);
    let length = u32::try_from(header.len()).unwrap_or(u32::MAX);
    let mut out = Vec::with_capacity(4 + header.len() + payload.len());
    out.extend_from_slice(&length.to_le_bytes());
    out.extend_from_slice(&header);
    out.extend_from_slice(payload);
    out
}

/// Splits what [`encode_framed`] made; the payload is a slice of `bytes`, not a copy.
pub fn decode_framed<T: serde::de::DeserializeOwned>(
    bytes: &Bytes,
) -> Result<(T, Bytes), DecodeError> {
    let short = || DecodeError::from("message shorter than its header");
    let length_bytes: [u8; 4] = bytes
        .get(..4)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(short)?;
    let length = u32::from_le_bytes(length_bytes) as usize;
    let header_end = 4usize
        .checked_add(length)
        .filter(|end| *end <= bytes.len())
        .ok_or_else(short)?;
    let header = wire::decode(&bytes[4..header_end])?;
    Ok((header, bytes.slice(header_end..)))
}

/// Joins records into one message: `([record length: u32 LE][record])*`.
pub fn encode_records<R: AsRef<[u8]>>(records: &[R]) -> Vec<u8> {
    let total = records.iter().map(|r| 4 + r.as_ref().len()).sum();
    let mut out = Vec::with_capacity(total);
    for record in records {
        let record = record.as_ref();
        let length = u32::try_from(record.len()).unwrap_or(u32::MAX);
        out.extend_from_slice(&length.to_le_bytes());
        out.extend_from_slice(record);
    }
    out
}

/// Splits what [`encode_records`] made; each record is a slice of `bytes`, not a copy.
pub fn decode_records(bytes: &Bytes) -> Result<Vec<Bytes>, DecodeError> {
    let mut records = Vec::new();
    let mut at = 0usize;
    while at < bytes.len() {
        let length_bytes: [u8; 4] = bytes
            .get(at..at + 4)
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| DecodeError::from("record length cut short"))?;
        let start = at + 4;
        let end = start
            .checked_add(u32::from_le_bytes(length_bytes) as usize)
            .filter(|end| *end <= bytes.len())
            .ok_or_else(|| DecodeError::from("record longer than the message"))?;
        records.push(bytes.slice(start..end));
        at = end;
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::DeliverHeader;
    use crate::{DeliveryMode, FrameKind, SessionKey};

    #[test]
    fn framed_messages_keep_the_payload_apart() {
        let header = DeliverHeader {
            request_id: "r1".into(),
            targets: vec![SessionKey::from("a")],
            kind: FrameKind::Binary,
            mode: DeliveryMode::Send,
        };
        let bytes = Bytes::from(encode_framed(&header, b"\x00payload"));
        let (decoded, payload): (DeliverHeader, Bytes) = decode_framed(&bytes).unwrap();
        assert_eq!(decoded, header);
        assert_eq!(&payload[..], b"\x00payload");
        assert!(decode_framed::<DeliverHeader>(&bytes.slice(..3)).is_err());
        assert!(
            decode_framed::<DeliverHeader>(&Bytes::from_static(&[255, 255, 255, 255, 1])).is_err()
        );
    }

    #[test]
    fn records_round_trip_and_reject_truncation() {
        let records: Vec<&[u8]> = vec![b"one", b"", b"three"];
        let bytes = Bytes::from(encode_records(&records));
        let decoded = decode_records(&bytes).unwrap();
        assert_eq!(decoded, vec![&b"one"[..], &b""[..], &b"three"[..]]);
        assert!(decode_records(&Bytes::new()).unwrap().is_empty());
        assert!(decode_records(&bytes.slice(..bytes.len() - 1)).is_err());
        assert!(decode_records(&bytes.slice(..2)).is_err());
    }
}

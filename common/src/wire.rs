//! The binary encoding of every message Oort nodes exchange over NATS and of what raft keeps on
//! disk: bincode (standard configuration) over serde.
//!
//! Decoding is bounded. bincode allocates a length prefix before it reads the bytes behind it,
//! so an unbounded decoder turns a 12-byte message claiming a 2^44-byte string into an abort.
//! Every decode here runs with a limit on the bytes it may claim, and refuses input longer than
//! that limit before decoding starts.

use bincode::config::{Configuration, Limit, standard};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// The most a message from another node may claim when decoded: well above the largest message
/// Oort sends (a raft append of 16 entries of at most 48 KiB each, a 256 KiB snapshot chunk, a
/// lookup of a few thousand keys), far below what would hurt a node.
pub const MAX_MESSAGE_BYTES: usize = 8 << 20;

/// The most a directory snapshot may claim when decoded: about ten million sessions.
pub const MAX_SNAPSHOT_BYTES: usize = 1 << 30;

/// A message that could not be decoded.
#[derive(Debug, thiserror::Error)]
#[error("undecodable message: {0}")]
pub struct DecodeError(String);

impl From<&str> for DecodeError {
    fn from(reason: &str) -> Self {
        Self(reason.to_owned())
    }
}

/// Encodes a message.
pub fn encode<T: Serialize>(message: &T) -> Vec<u8> {
    // Encoding into a Vec cannot fail for the types Oort sends (no maps with non-serializable
    // keys, no sequences of unknown length); an empty buffer would be refused by the receiver.
    bincode::serde::encode_to_vec(message, standard()).unwrap_or_default()
}

/// Decodes a message from another node: at most [`MAX_MESSAGE_BYTES`], no trailing bytes.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, DecodeError> {
    decode_bounded(bytes, standard().with_limit::<MAX_MESSAGE_BYTES>())
}

/// Decodes a directory snapshot: at most [`MAX_SNAPSHOT_BYTES`], no trailing bytes.
pub fn decode_snapshot<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, DecodeError> {
    decode_bounded(bytes, standard().with_limit::<MAX_SNAPSHOT_BYTES>())
}

fn decode_bounded<T: DeserializeOwned, const N: usize>(
    bytes: &[u8],
    config: Configuration<bincode::config::LittleEndian, bincode::config::Varint, Limit<N>>,
) -> Result<T, DecodeError> {
    if bytes.len() > N {
        return Err(DecodeError(format!(
            "{} bytes is more than the {N} allowed",
            bytes.len()
        )));
    }
    let (message, read) = bincode::serde::decode_from_slice(bytes, config)
        .map_err(|err| DecodeError(err.to_string()))?;
    if read != bytes.len() {
        return Err(DecodeError(format!(
            "{} trailing bytes",
            bytes.len() - read
        )));
    }
    Ok(message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_garbage() {
        let message = (String::from("k"), 7u64, vec![1u8, 2]);
        let bytes = encode(&message);
        assert_eq!(decode::<(String, u64, Vec<u8>)>(&bytes).unwrap(), message);
        assert!(decode::<(String, u64, Vec<u8>)>(&bytes[..bytes.len() - 1]).is_err());
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(decode::<(String, u64, Vec<u8>)>(&longer).is_err());
    }

    #[test]
    fn a_huge_length_prefix_is_refused_without_allocating_it() {
        // 0xfd: a u64 length follows (bincode's varint), here 2^44, then three bytes.
        let mut bytes = vec![0xfd];
        bytes.extend_from_slice(&(1u64 << 44).to_le_bytes());
        bytes.extend_from_slice(b"abc");
        assert!(decode::<String>(&bytes).is_err());
        assert!(decode::<Vec<String>>(&bytes).is_err());
        assert!(decode_snapshot::<String>(&bytes).is_err());
    }

    #[test]
    fn input_longer_than_the_limit_is_refused_before_decoding() {
        let big = vec![0u8; MAX_MESSAGE_BYTES + 1];
        let error = decode::<Vec<u8>>(&big).unwrap_err();
        assert!(error.to_string().contains("more than"), "{error}");
    }
}

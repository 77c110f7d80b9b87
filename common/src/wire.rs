//! The binary encoding of every message Oort nodes exchange over NATS: bincode (standard
//! configuration) over serde.

use serde::Serialize;
use serde::de::DeserializeOwned;

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
    bincode::serde::encode_to_vec(message, bincode::config::standard()).unwrap_or_default()
}

/// Decodes a message, refusing trailing bytes.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, DecodeError> {
    let (message, read) = bincode::serde::decode_from_slice(bytes, bincode::config::standard())
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
}

//! The only module that uses bincode.
//!
//! Everything on the wire after the handshake is encoded here with one configuration value,
//! so the codec can be swapped (firecracker moved from bincode to bitcode this way) without
//! touching callers. Decoding is bounded by [`crate::MAX_FRAME_LEN`] and rejects trailing
//! bytes, so a frame maps to exactly one value.

use serde::Serialize;
use serde::de::DeserializeOwned;

/// Errors from encoding or decoding a payload.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// The value could not be encoded (for example it exceeds the frame limit).
    #[error("cannot encode message: {0}")]
    Encode(String),
    /// The bytes are not a valid encoding of the expected type.
    #[error("malformed message: {0}")]
    Decode(String),
    /// The bytes decoded to a value but some bytes were left over.
    #[error("malformed message: {trailing} trailing bytes after the value")]
    TrailingBytes {
        /// How many bytes were not consumed.
        trailing: usize,
    },
    /// The encoded value is larger than the frame limit.
    #[error("message of {len} bytes exceeds the {max}-byte frame limit")]
    TooLarge {
        /// Encoded length.
        len: usize,
        /// The limit.
        max: usize,
    },
}

fn config() -> impl bincode::config::Config {
    // Varint integers keep common frames small; big-endian is irrelevant for varints but is
    // fixed here so the golden fixtures never depend on the host.
    bincode::config::standard()
        .with_big_endian()
        .with_variable_int_encoding()
        .with_limit::<{ crate::MAX_FRAME_LEN }>()
}

/// Encode `value` into a fresh buffer, refusing anything larger than one frame.
pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, CodecError> {
    let bytes = bincode::serde::encode_to_vec(value, config())
        .map_err(|err| CodecError::Encode(err.to_string()))?;
    if bytes.len() > crate::MAX_FRAME_LEN {
        return Err(CodecError::TooLarge {
            len: bytes.len(),
            max: crate::MAX_FRAME_LEN,
        });
    }
    Ok(bytes)
}

/// Decode exactly one `T` from `bytes`.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    if bytes.len() > crate::MAX_FRAME_LEN {
        return Err(CodecError::TooLarge {
            len: bytes.len(),
            max: crate::MAX_FRAME_LEN,
        });
    }
    let (value, used) = bincode::serde::decode_from_slice(bytes, config())
        .map_err(|err| CodecError::Decode(err.to_string()))?;
    if used != bytes.len() {
        return Err(CodecError::TrailingBytes {
            trailing: bytes.len() - used,
        });
    }
    Ok(value)
}

//! The only module that uses bincode.
//!
//! Everything on the wire after the handshake is encoded here with one configuration value,
//! so the codec can be swapped (firecracker moved from bincode to bitcode this way) without
//! touching callers. Decoding refuses input longer than [`crate::MAX_FRAME_LEN`], bounds
//! bincode's allocations with a limit derived from it, and rejects trailing bytes, so a frame
//! maps to exactly one value.

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

/// bincode's decode limit, in bincode's own accounting.
///
/// bincode charges each integer its in-memory width (8 bytes for a `u64` or a length, 4 for a
/// variant index) even when the varint on the wire is one byte, so a legal frame of
/// `MAX_FRAME_LEN` bytes can be charged up to 8 times its size. A limit of `MAX_FRAME_LEN`
/// itself would refuse frames that `encode` accepted. Eight times the frame is the worst
/// case; the limit still bounds what a forged length inside a small frame can allocate.
const DECODE_LIMIT: usize = 8 * crate::MAX_FRAME_LEN;

fn config() -> impl bincode::config::Config {
    // Varint integers keep common frames small. Varints above 250 are a marker byte plus a
    // fixed-width integer in this byte order, so big-endian is part of the wire format.
    bincode::config::standard()
        .with_big_endian()
        .with_variable_int_encoding()
        .with_limit::<DECODE_LIMIT>()
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

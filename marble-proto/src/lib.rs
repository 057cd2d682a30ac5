//! The MARBLE wire contract between `marblectl` and `marbled`.
//!
//! This crate owns everything both sides must agree on and nothing else: the frame limits
//! ([`MAX_FRAME_LEN`]), the fixed-layout [`handshake`], the request/reply envelope and the
//! typed messages in [`wire`], the one [`codec`] module that touches bincode, and the rule
//! for names a request may create plus the quoting of commands shown to a person
//! ([`names`]: one rule and one helper for both binaries). It has no runtime and no I/O
//! beyond the framed-connection helper in [`conn`].
//!
//! Compatibility rules (see `docs/PROTOCOL.md`): the major version must match exactly; a minor
//! bump may only append `Request` variants, and append `Response`/`Event` variants sent only
//! in reply to those new requests or only to clients whose hello announced that minor (the
//! 1.5 keepalive; the 1.6 error kind `NoSpace`, which older clients get as `Unavailable`).
//! Every variant documents the minor it arrived in.
#![warn(missing_docs)]
#![forbid(unsafe_code)]

pub mod codec;
pub mod conn;
pub mod handshake;
pub mod names;
pub mod wire;

pub use codec::CodecError;
pub use conn::{ConnError, FramedConn};
pub use handshake::{HandshakeError, Hello, ServerHello, Welcome};
pub use wire::*;

/// Protocol major version. A different major on the other side is always rejected.
pub const PROTO_MAJOR: u16 = 1;
/// Protocol minor version of this build. See the compatibility rules in the crate docs.
pub const PROTO_MINOR: u16 = 7;

/// What `marbled --version` and `marblectl --version` print after the name: the crate
/// version, the git commit it was built from (each crate's `build.rs`; `unknown` outside a git
/// checkout) and this protocol version — one format, so a host's two can be compared at a
/// glance.
pub fn version_line(crate_version: &str, commit: &str) -> String {
    format!("{crate_version} (commit {commit}, protocol {PROTO_MAJOR}.{PROTO_MINOR})")
}
/// Largest frame either side accepts, in bytes (payload, excluding the 4-byte length prefix).
///
/// 1 MiB comfortably holds a status report for hundreds of VMs; bulk data (images, logs)
/// never crosses the socket. The codec derives bincode's decode limit from it so that a length
/// inside a payload cannot make the decoder allocate more than a small multiple of a frame.
pub const MAX_FRAME_LEN: usize = 1024 * 1024;

/// How often the daemon sends [`Event::Keepalive`] while a submitted request is pending
/// (since 1.5, to clients that announced minor 5 or later), in milliseconds. A client may
/// treat a pending request as lost after a few intervals of silence.
pub const KEEPALIVE_INTERVAL_MS: u64 = 1000;
/// Longest free-text or name field a request may carry, in bytes (see
/// [`Request::validate`]). Reasons end up in every `status` reply, so unbounded ones would
/// eventually push that reply over [`MAX_FRAME_LEN`].
pub const MAX_TEXT_FIELD_LEN: usize = 1024;

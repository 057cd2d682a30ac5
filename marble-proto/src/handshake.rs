//! The first frame on every connection, in a byte layout that never changes.
//!
//! Because bincode is not self-describing, a client and a daemon of different majors cannot
//! even agree on how to read each other's requests. The handshake therefore is encoded by
//! hand with fixed-width fields so that *every* version of MARBLE can read every other
//! version's hello and answer with a clear reason:
//!
//! ```text
//! Hello:       "MRBL" | major u16 BE | minor u16 BE | str client_version | u16 n | n × str feature
//! ServerHello: "MRBL" | tag u8 (0 = Welcome, 1 = Rejected) | ...
//!   Welcome:   major u16 BE | minor u16 BE | str daemon_version | str git_sha | u16 n | n × str
//!   Rejected:  major u16 BE | minor u16 BE | str reason
//! str = u16 BE byte length | UTF-8 bytes (at most MAX_HANDSHAKE_STR bytes)
//! ```
//!
//! The server's major/minor travel in `Rejected` too, so the client can say which side is
//! older.

use crate::{PROTO_MAJOR, PROTO_MINOR};

/// The four magic bytes that open every hello.
pub const MAGIC: [u8; 4] = *b"MRBL";
/// Longest string accepted in a handshake field.
pub const MAX_HANDSHAKE_STR: usize = 256;
/// Most feature names accepted in a handshake.
pub const MAX_FEATURES: usize = 64;

/// Why a handshake could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {
    /// The first four bytes are not `MRBL`: the peer does not speak MARBLE.
    #[error("bad magic {found:02x?}: the peer does not speak the MARBLE protocol")]
    BadMagic {
        /// The bytes found instead.
        found: Vec<u8>,
    },
    /// The frame ended before a field was complete.
    #[error("truncated handshake: needed {needed} more bytes for {field}")]
    Truncated {
        /// The field being read.
        field: &'static str,
        /// Missing byte count.
        needed: usize,
    },
    /// A string field is longer than allowed or is not UTF-8.
    #[error("invalid handshake field {field}")]
    InvalidField {
        /// The field being read.
        field: &'static str,
    },
    /// Bytes were left after the last field.
    #[error("{0} trailing bytes after the handshake")]
    TrailingBytes(usize),
    /// The tag byte of a server hello is neither Welcome nor Rejected.
    #[error("unknown server hello tag {0}")]
    UnknownTag(u8),
}

/// The client's opening frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    /// Client protocol major.
    pub major: u16,
    /// Client protocol minor.
    pub minor: u16,
    /// Free-form client build version, for logs.
    pub client_version: String,
    /// Optional features the client would like to use.
    pub features: Vec<String>,
}

impl Hello {
    /// The hello this build sends.
    pub fn current(client_version: &str) -> Self {
        Self {
            major: PROTO_MAJOR,
            minor: PROTO_MINOR,
            client_version: client_version.to_owned(),
            features: Vec::new(),
        }
    }

    /// Encode into the fixed layout.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&self.major.to_be_bytes());
        out.extend_from_slice(&self.minor.to_be_bytes());
        put_str(&mut out, &self.client_version);
        put_list(&mut out, &self.features);
        out
    }

    /// Decode from the fixed layout.
    pub fn decode(bytes: &[u8]) -> Result<Self, HandshakeError> {
        let mut r = Reader { bytes, pos: 0 };
        r.magic()?;
        let hello = Self {
            major: r.u16("major")?,
            minor: r.u16("minor")?,
            client_version: r.string("client_version")?,
            features: r.list("features")?,
        };
        r.finish()?;
        Ok(hello)
    }
}

/// The daemon's acceptance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Welcome {
    /// Daemon protocol major.
    pub major: u16,
    /// Daemon protocol minor.
    pub minor: u16,
    /// Daemon build version.
    pub daemon_version: String,
    /// Git revision the daemon was built from (may be `unknown`).
    pub git_sha: String,
    /// Features the daemon supports.
    pub features: Vec<String>,
}

/// The daemon's answer to a [`Hello`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerHello {
    /// The connection may proceed with requests.
    Welcome(Welcome),
    /// The daemon refuses; it closes the connection after sending this.
    Rejected {
        /// Daemon protocol major.
        major: u16,
        /// Daemon protocol minor.
        minor: u16,
        /// A human-readable reason.
        reason: String,
    },
}

impl ServerHello {
    /// Encode into the fixed layout.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        out.extend_from_slice(&MAGIC);
        match self {
            ServerHello::Welcome(w) => {
                out.push(0);
                out.extend_from_slice(&w.major.to_be_bytes());
                out.extend_from_slice(&w.minor.to_be_bytes());
                put_str(&mut out, &w.daemon_version);
                put_str(&mut out, &w.git_sha);
                put_list(&mut out, &w.features);
            }
            ServerHello::Rejected {
                major,
                minor,
                reason,
            } => {
                out.push(1);
                out.extend_from_slice(&major.to_be_bytes());
                out.extend_from_slice(&minor.to_be_bytes());
                put_str(&mut out, reason);
            }
        }
        out
    }

    /// Decode from the fixed layout.
    pub fn decode(bytes: &[u8]) -> Result<Self, HandshakeError> {
        let mut r = Reader { bytes, pos: 0 };
        r.magic()?;
        let hello = match r.u8("tag")? {
            0 => ServerHello::Welcome(Welcome {
                major: r.u16("major")?,
                minor: r.u16("minor")?,
                daemon_version: r.string("daemon_version")?,
                git_sha: r.string("git_sha")?,
                features: r.list("features")?,
            }),
            1 => ServerHello::Rejected {
                major: r.u16("major")?,
                minor: r.u16("minor")?,
                reason: r.string("reason")?,
            },
            other => return Err(HandshakeError::UnknownTag(other)),
        };
        r.finish()?;
        Ok(hello)
    }
}

/// The daemon's decision on a client's hello, as a pure function of the two versions.
///
/// The major must match exactly. Any minor is accepted: an older client only sends requests
/// the daemon knows; a newer client checks [`Welcome::minor`] before sending a request the
/// daemon is too old for (see [`crate::Request::since_minor`]).
pub fn negotiate(hello: &Hello, daemon_version: &str, git_sha: &str) -> ServerHello {
    if hello.major != PROTO_MAJOR {
        let older = if hello.major < PROTO_MAJOR {
            "marblectl"
        } else {
            "marbled"
        };
        return ServerHello::Rejected {
            major: PROTO_MAJOR,
            minor: PROTO_MINOR,
            reason: format!(
                "protocol major mismatch: marblectl speaks {}.{}, marbled speaks {}.{}; {older} is older, upgrade it",
                hello.major, hello.minor, PROTO_MAJOR, PROTO_MINOR
            ),
        };
    }
    ServerHello::Welcome(Welcome {
        major: PROTO_MAJOR,
        minor: PROTO_MINOR,
        daemon_version: daemon_version.to_owned(),
        git_sha: git_sha.to_owned(),
        features: Vec::new(),
    })
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    // Truncate on a char boundary rather than fail: these are informational strings.
    let mut end = s.len().min(MAX_HANDSHAKE_STR);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    let len = u16::try_from(end).expect("invariant: end <= MAX_HANDSHAKE_STR < u16::MAX");
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&s.as_bytes()[..end]);
}

fn put_list(out: &mut Vec<u8>, items: &[String]) {
    let items = &items[..items.len().min(MAX_FEATURES)];
    let n = u16::try_from(items.len()).expect("invariant: at most MAX_FEATURES items");
    out.extend_from_slice(&n.to_be_bytes());
    for item in items {
        put_str(out, item);
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize, field: &'static str) -> Result<&[u8], HandshakeError> {
        let rest = &self.bytes[self.pos..];
        if rest.len() < n {
            return Err(HandshakeError::Truncated {
                field,
                needed: n - rest.len(),
            });
        }
        self.pos += n;
        Ok(&rest[..n])
    }

    fn magic(&mut self) -> Result<(), HandshakeError> {
        let avail = self.bytes.len().min(MAGIC.len());
        if self.bytes[..avail] != MAGIC[..avail] {
            return Err(HandshakeError::BadMagic {
                found: self.bytes[..avail].to_vec(),
            });
        }
        self.take(MAGIC.len(), "magic")?;
        Ok(())
    }

    fn u8(&mut self, field: &'static str) -> Result<u8, HandshakeError> {
        Ok(self.take(1, field)?[0])
    }

    fn u16(&mut self, field: &'static str) -> Result<u16, HandshakeError> {
        let b = self.take(2, field)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn string(&mut self, field: &'static str) -> Result<String, HandshakeError> {
        let len = usize::from(self.u16(field)?);
        if len > MAX_HANDSHAKE_STR {
            return Err(HandshakeError::InvalidField { field });
        }
        let b = self.take(len, field)?;
        String::from_utf8(b.to_vec()).map_err(|_| HandshakeError::InvalidField { field })
    }

    fn list(&mut self, field: &'static str) -> Result<Vec<String>, HandshakeError> {
        let n = usize::from(self.u16(field)?);
        if n > MAX_FEATURES {
            return Err(HandshakeError::InvalidField { field });
        }
        (0..n).map(|_| self.string(field)).collect()
    }

    fn finish(&self) -> Result<(), HandshakeError> {
        match self.bytes.len() - self.pos {
            0 => Ok(()),
            n => Err(HandshakeError::TrailingBytes(n)),
        }
    }
}

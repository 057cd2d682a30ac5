//! A framed connection shared by client and daemon: length-delimited frames with the
//! explicit [`crate::MAX_FRAME_LEN`] cap, the handshake, and typed send/receive.
//!
//! The length prefix is a big-endian u32 (tokio-util's default). An oversize prefix is
//! rejected by the codec *before* any buffer for the body is allocated.

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::codec::{Framed, LengthDelimitedCodec};

use crate::codec::{self, CodecError};
use crate::handshake::{self, HandshakeError, Hello, ServerHello, Welcome};

/// Errors on a framed connection.
#[derive(Debug, thiserror::Error)]
pub enum ConnError {
    /// Reading or writing the socket failed, or a frame exceeded the limit.
    #[error("connection i/o failed")]
    Io(#[from] std::io::Error),
    /// The peer closed the connection.
    #[error("connection closed by peer")]
    Closed,
    /// A frame did not decode.
    #[error("malformed frame")]
    Codec(#[from] CodecError),
    /// The handshake frame was malformed.
    #[error("malformed handshake")]
    Handshake(#[from] HandshakeError),
    /// The daemon rejected the handshake.
    #[error("daemon rejected the connection: {reason}")]
    Rejected {
        /// Daemon major.
        major: u16,
        /// Daemon minor.
        minor: u16,
        /// The daemon's reason.
        reason: String,
    },
}

/// Build the length-delimited codec with MARBLE's explicit limit.
pub fn length_codec() -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder()
        .length_field_type::<u32>()
        .big_endian()
        .max_frame_length(crate::MAX_FRAME_LEN)
        .new_codec()
}

/// A framed, typed connection over any byte stream (a Unix socket in production).
#[derive(Debug)]
pub struct FramedConn<S> {
    framed: Framed<S, LengthDelimitedCodec>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> FramedConn<S> {
    /// Wrap a stream.
    pub fn new(stream: S) -> Self {
        Self {
            framed: Framed::new(stream, length_codec()),
        }
    }

    /// Send one raw frame.
    pub async fn send_frame(&mut self, payload: Vec<u8>) -> Result<(), ConnError> {
        self.framed.send(Bytes::from(payload)).await?;
        Ok(())
    }

    /// Receive one raw frame; `Ok(None)` when the peer closed cleanly between frames.
    pub async fn recv_frame(&mut self) -> Result<Option<Bytes>, ConnError> {
        match self.framed.next().await {
            None => Ok(None),
            Some(Ok(frame)) => Ok(Some(frame.freeze())),
            Some(Err(err)) => Err(ConnError::Io(err)),
        }
    }

    /// Encode and send one value.
    pub async fn send<T: Serialize>(&mut self, value: &T) -> Result<(), ConnError> {
        let bytes = codec::encode(value)?;
        self.send_frame(bytes).await
    }

    /// Receive and decode one value; `Ok(None)` at a clean end of stream.
    pub async fn recv<T: DeserializeOwned>(&mut self) -> Result<Option<T>, ConnError> {
        match self.recv_frame().await? {
            None => Ok(None),
            Some(frame) => Ok(Some(codec::decode(&frame)?)),
        }
    }

    /// Client side of the handshake: send `hello`, return the daemon's welcome.
    pub async fn client_handshake(&mut self, hello: &Hello) -> Result<Welcome, ConnError> {
        self.send_frame(hello.encode()).await?;
        let frame = self.recv_frame().await?.ok_or(ConnError::Closed)?;
        match ServerHello::decode(&frame)? {
            ServerHello::Welcome(welcome) => Ok(welcome),
            ServerHello::Rejected {
                major,
                minor,
                reason,
            } => Err(ConnError::Rejected {
                major,
                minor,
                reason,
            }),
        }
    }

    /// Daemon side of the handshake: read the hello, answer it, and return it if accepted.
    ///
    /// A malformed hello gets a `Rejected` answer naming the problem (best effort) before the
    /// error is returned, so even a confused peer learns why it was dropped.
    pub async fn server_handshake(
        &mut self,
        daemon_version: &str,
        git_sha: &str,
    ) -> Result<Hello, ConnError> {
        let frame = self.recv_frame().await?.ok_or(ConnError::Closed)?;
        let hello = match Hello::decode(&frame) {
            Ok(hello) => hello,
            Err(err) => {
                let reject = ServerHello::Rejected {
                    major: crate::PROTO_MAJOR,
                    minor: crate::PROTO_MINOR,
                    reason: format!("malformed handshake: {err}"),
                };
                let _ = self.send_frame(reject.encode()).await;
                return Err(err.into());
            }
        };
        let answer = handshake::negotiate(&hello, daemon_version, git_sha);
        self.send_frame(answer.encode()).await?;
        match answer {
            ServerHello::Welcome(_) => Ok(hello),
            ServerHello::Rejected {
                major,
                minor,
                reason,
            } => Err(ConnError::Rejected {
                major,
                minor,
                reason,
            }),
        }
    }

    /// Give back the underlying stream (for tests that want to write raw bytes).
    pub fn into_inner(self) -> S {
        self.framed.into_inner()
    }
}

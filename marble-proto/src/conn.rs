//! A framed connection shared by client and daemon: length-delimited frames with the
//! explicit [`crate::MAX_FRAME_LEN`] cap, the handshake, and typed send/receive.
//!
//! The length prefix is a big-endian u32 (tokio-util's default). An oversize prefix is
//! rejected by the codec *before* any buffer for the body is allocated.
//!
//! Deadlines are the caller's policy ([`FramedConn::recv_frame_within`] takes them as
//! arguments); this module only tells an idle peer from one stuck inside a frame.

use std::future::Future;
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

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
    /// No frame began within the idle deadline.
    #[error("no frame within {after:?}")]
    IdleTimeout {
        /// The idle deadline.
        after: Duration,
    },
    /// A frame began but did not complete within the frame deadline.
    #[error("a frame began but did not complete within {after:?}")]
    FrameTimeout {
        /// The frame deadline.
        after: Duration,
    },
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

    /// Receive one raw frame with two deadlines: a frame must begin within `idle` and, once
    /// its first byte has arrived, complete within `frame`. `Ok(None)` at a clean close.
    ///
    /// Cancel-safe (the partial frame stays buffered), so it can sit in a `select!`.
    pub async fn recv_frame_within(
        &mut self,
        idle: Duration,
        frame: Duration,
    ) -> Result<Option<Bytes>, ConnError> {
        let mut started = !self.framed.read_buffer().is_empty();
        let first = if started { frame } else { idle };
        let mut sleep = Box::pin(tokio::time::sleep(first));
        std::future::poll_fn(|cx| {
            if let Poll::Ready(item) = self.framed.poll_next_unpin(cx) {
                return Poll::Ready(match item {
                    None => Ok(None),
                    Some(Ok(bytes)) => Ok(Some(bytes.freeze())),
                    Some(Err(err)) => Err(ConnError::Io(err)),
                });
            }
            // Bytes buffered but no complete frame: the frame has begun; its own deadline
            // starts now.
            if !started && !self.framed.read_buffer().is_empty() {
                started = true;
                sleep.as_mut().reset(tokio::time::Instant::now() + frame);
            }
            match Pin::new(&mut sleep).as_mut().poll(cx) {
                Poll::Pending => Poll::Pending,
                Poll::Ready(()) if started => {
                    Poll::Ready(Err(ConnError::FrameTimeout { after: frame }))
                }
                Poll::Ready(()) => Poll::Ready(Err(ConnError::IdleTimeout { after: idle })),
            }
        })
        .await
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

    /// Daemon side: refuse the connection before reading its hello (the daemon is at its
    /// connection limit). The `Rejected` answer carries this build's version, so a client
    /// of the same major can tell a refusal from a version mismatch.
    pub async fn server_refuse(&mut self, reason: &str) -> Result<(), ConnError> {
        let reject = ServerHello::Rejected {
            major: crate::PROTO_MAJOR,
            minor: crate::PROTO_MINOR,
            reason: reason.to_owned(),
        };
        self.send_frame(reject.encode()).await
    }

    /// Give back the underlying stream (for tests that want to write raw bytes).
    pub fn into_inner(self) -> S {
        self.framed.into_inner()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[tokio::test]
    async fn idle_and_slow_frames_hit_their_own_deadlines() {
        // Nothing arrives: the idle deadline.
        let (ours, _theirs) = tokio::io::duplex(64);
        let mut conn = FramedConn::new(ours);
        let short = Duration::from_millis(100);
        let err = conn
            .recv_frame_within(short, short)
            .await
            .expect_err("idle");
        assert!(matches!(err, ConnError::IdleTimeout { .. }), "{err}");

        // A frame begins and stalls: cut by the frame deadline, well before the idle one.
        let idle = Duration::from_secs(5);
        let frame = Duration::from_millis(300);
        let (ours, mut theirs) = tokio::io::duplex(64);
        let mut conn = FramedConn::new(ours);
        let start = tokio::time::Instant::now();
        theirs.write_all(&[0, 0, 0, 8, 1, 2]).await.expect("write");
        let err = conn.recv_frame_within(idle, frame).await.expect_err("slow");
        assert!(matches!(err, ConnError::FrameTimeout { .. }), "{err}");
        assert!(start.elapsed() < idle, "{:?}", start.elapsed());
        drop(theirs);

        // A frame that completes in time is returned.
        let (ours, mut theirs) = tokio::io::duplex(64);
        let mut conn = FramedConn::new(ours);
        theirs.write_all(&[0, 0, 0, 2, 7, 9]).await.expect("write");
        let got = conn.recv_frame_within(idle, frame).await.expect("frame");
        assert_eq!(got.as_deref(), Some(&[7u8, 9][..]));
    }
}

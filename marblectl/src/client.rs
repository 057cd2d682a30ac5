//! The typed client: connect, handshake, send one request, collect streamed replies.
//!
//! Connection failures are classified so the CLI can say what to do: a missing socket or a
//! refused connection means the daemon is not running (print the `launchctl` command); a
//! rejected handshake means a version mismatch (say which side is older) or, from a daemon
//! of the same version, a refusal at its connection limit.
//!
//! Daemon silence is bounded by `--timeout` ([`set_timeout`]): no handshake answer within it
//! is [`ClientError::NoAnswer`] (exit 69); after the handshake, no reply frame for it while a
//! request is pending is [`ClientError::Silent`] (exit 75). A daemon of protocol 1.5 or later
//! sends `Event::Keepalive` every second while it works on a long request (a slot wait, a
//! boot, a transfer), so those are never cut off; keepalives are dropped here, never shown.
//! Streams ([`Client::next_reply`], `events --follow`) have no silence limit: quiet is normal.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use marble_proto::{
    ClientFrame, ConnError, ErrorKind, Event, FramedConn, Hello, KEEPALIVE_INTERVAL_MS,
    PROTO_MAJOR, PROTO_MINOR, Reply, Request, Response, ServerFrame, Welcome, WireError,
};
use tokio::net::UnixStream;

/// Default of `--timeout`.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// The first daemon minor that sends keepalives (below it, a pending request has no silence
/// limit, as before: an older daemon says nothing while it waits for a slot).
const KEEPALIVE_MINOR: u16 = 5;

/// `--timeout` in ms. Process-wide because every command connects through
/// [`Client::connect`]; set once by `marblectl::run` before any connection.
static TIMEOUT_MS: AtomicU64 = AtomicU64::new(10_000);

/// Set the silence timeout for every later connection (`--timeout`).
pub fn set_timeout(timeout: Duration) {
    let ms = u64::try_from(timeout.as_millis())
        .unwrap_or(u64::MAX)
        .max(1);
    TIMEOUT_MS.store(ms, Ordering::Relaxed);
}

/// The silence timeout in force.
pub fn timeout() -> Duration {
    Duration::from_millis(TIMEOUT_MS.load(Ordering::Relaxed))
}

/// The launchd label of the daemon job.
pub const LAUNCHD_LABEL: &str = "ch.cern.sft.marbled";
/// Where the daemon plist is installed.
pub const LAUNCHD_PLIST: &str = "/Library/LaunchDaemons/ch.cern.sft.marbled.plist";

/// Why a request did not produce a response.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Nothing listens on the socket.
    #[error(
        "marbled is not running (cannot connect to {socket}: {reason})\n  start it with:   sudo launchctl bootstrap system {LAUNCHD_PLIST}\n  or restart it:   sudo launchctl kickstart -k system/{LAUNCHD_LABEL}"
    )]
    NotRunning {
        /// The socket path.
        socket: PathBuf,
        /// The OS error.
        reason: String,
    },
    /// The socket exists but we may not connect.
    #[error(
        "permission denied on {socket}: ask an admin to add your user to the socket group (daemon.socket_group)"
    )]
    NoAccess {
        /// The socket path.
        socket: PathBuf,
    },
    /// The daemon accepted the connection but did not answer the handshake in time.
    #[error(
        "marbled did not answer on {socket} within {}: it may be stopped, overloaded or wedged\n  restart it with:   sudo launchctl kickstart -k system/{LAUNCHD_LABEL}",
        humantime::format_duration(*timeout)
    )]
    NoAnswer {
        /// The socket path.
        socket: PathBuf,
        /// The timeout.
        timeout: Duration,
    },
    /// After the handshake, the daemon sent nothing for the timeout while a request was
    /// pending.
    #[error(
        "marbled on {socket} sent nothing for {} while answering `{command}`; try again (raise --timeout if it is only slow)",
        humantime::format_duration(*timeout)
    )]
    Silent {
        /// The socket path.
        socket: PathBuf,
        /// The request kind.
        command: &'static str,
        /// The timeout.
        timeout: Duration,
    },
    /// The daemon refused the connection (at its connection limit).
    #[error("marbled on {socket} refused the connection: {reason}")]
    Refused {
        /// The socket path.
        socket: PathBuf,
        /// The daemon's reason.
        reason: String,
    },
    /// Protocol versions are incompatible.
    #[error("{0}")]
    VersionMismatch(String),
    /// The daemon is older than the request needs.
    #[error(
        "marbled is too old for `{command}`: it needs protocol {PROTO_MAJOR}.{needed}, the daemon speaks {PROTO_MAJOR}.{have}; upgrade marbled"
    )]
    DaemonTooOld {
        /// The request kind.
        command: &'static str,
        /// Minor needed.
        needed: u16,
        /// Minor the daemon has.
        have: u16,
    },
    /// The daemon answered with an error.
    #[error("{0}")]
    Daemon(WireError),
    /// The connection failed mid-way.
    #[error("connection to marbled failed")]
    Conn(#[source] ConnError),
    /// The daemon sent something this client does not expect.
    #[error("protocol error: {0}")]
    Protocol(String),
}

impl ClientError {
    /// The wire error kind, when the daemon answered with one.
    pub fn kind(&self) -> Option<ErrorKind> {
        match self {
            ClientError::Daemon(err) => Some(err.kind),
            _ => None,
        }
    }
}

/// A connected client.
#[derive(Debug)]
pub struct Client {
    conn: FramedConn<UnixStream>,
    welcome: Welcome,
    next_id: u32,
    socket: PathBuf,
    timeout: Duration,
}

impl Client {
    /// Connect and handshake, within the silence timeout ([`set_timeout`]).
    pub async fn connect(socket: &Path) -> Result<Client, ClientError> {
        let timeout = timeout();
        match tokio::time::timeout(timeout, Self::connect_inner(socket)).await {
            Ok(client) => client.map(|(conn, welcome)| Client {
                conn,
                welcome,
                next_id: 1,
                socket: socket.to_owned(),
                timeout,
            }),
            Err(_) => Err(ClientError::NoAnswer {
                socket: socket.to_owned(),
                timeout,
            }),
        }
    }

    async fn connect_inner(
        socket: &Path,
    ) -> Result<(FramedConn<UnixStream>, Welcome), ClientError> {
        let stream = UnixStream::connect(socket)
            .await
            .map_err(|err| match err.kind() {
                std::io::ErrorKind::PermissionDenied => ClientError::NoAccess {
                    socket: socket.to_owned(),
                },
                _ => ClientError::NotRunning {
                    socket: socket.to_owned(),
                    reason: err.to_string(),
                },
            })?;
        let mut conn = FramedConn::new(stream);
        let hello = Hello::current(env!("CARGO_PKG_VERSION"));
        let welcome = conn
            .client_handshake(&hello)
            .await
            .map_err(|err| match err {
                // Same version: not a mismatch but a refusal (the connection limit).
                ConnError::Rejected { major, reason, .. } if major == PROTO_MAJOR => {
                    ClientError::Refused {
                        socket: socket.to_owned(),
                        reason,
                    }
                }
                ConnError::Rejected {
                    major,
                    minor,
                    reason,
                } => ClientError::VersionMismatch(version_message(major, minor, &reason)),
                other => ClientError::Conn(other),
            })?;
        Ok((conn, welcome))
    }

    /// What the daemon said in the handshake.
    pub fn welcome(&self) -> &Welcome {
        &self.welcome
    }

    /// Send `request` and wait for its terminal reply; `on_event` sees streamed events
    /// (never keepalives). Daemon silence longer than the timeout is [`ClientError::Silent`].
    pub async fn call(
        &mut self,
        request: Request,
        mut on_event: impl FnMut(&Event),
    ) -> Result<Response, ClientError> {
        let command = request.kind();
        let silence = self.pending_silence();
        let sent = self.send(request);
        match silence {
            Some(limit) => tokio::time::timeout(limit, sent)
                .await
                .map_err(|_| self.silent(command, limit))??,
            None => sent.await?,
        };
        loop {
            let frame = match silence {
                Some(limit) => tokio::time::timeout(limit, self.conn.recv::<ServerFrame>())
                    .await
                    .map_err(|_| self.silent(command, limit))?,
                None => self.conn.recv::<ServerFrame>().await,
            };
            let frame = frame
                .map_err(ClientError::Conn)?
                .ok_or(ClientError::Conn(ConnError::Closed))?;
            match frame.body {
                Reply::Ok(resp) => return Ok(resp),
                Reply::Err(err) => return Err(ClientError::Daemon(err)),
                Reply::Event(Event::Keepalive) => {}
                Reply::Event(event) => on_event(&event),
                Reply::EndOfStream => {
                    return Err(ClientError::Protocol(
                        "stream ended without an answer".into(),
                    ));
                }
            }
        }
    }

    /// How long the daemon may be silent while a request is pending: the timeout, but at
    /// least two keepalive intervals (a shorter limit would race the keepalives); none for a
    /// daemon too old to send keepalives.
    fn pending_silence(&self) -> Option<Duration> {
        (self.welcome.minor >= KEEPALIVE_MINOR).then(|| {
            self.timeout
                .max(Duration::from_millis(2 * KEEPALIVE_INTERVAL_MS))
        })
    }

    fn silent(&self, command: &'static str, timeout: Duration) -> ClientError {
        ClientError::Silent {
            socket: self.socket.clone(),
            command,
            timeout,
        }
    }

    /// Send a request without waiting (for streams: then call [`Client::next_reply`]).
    pub async fn send(&mut self, request: Request) -> Result<u32, ClientError> {
        if request.since_minor() > self.welcome.minor {
            return Err(ClientError::DaemonTooOld {
                command: request.kind(),
                needed: request.since_minor(),
                have: self.welcome.minor,
            });
        }
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        self.conn
            .send(&ClientFrame { id, body: request })
            .await
            .map_err(ClientError::Conn)?;
        Ok(id)
    }

    /// The next reply frame of a stream, keepalives skipped; no silence limit (a quiet
    /// stream is normal).
    pub async fn next_reply(&mut self) -> Result<Reply, ClientError> {
        loop {
            let frame: Option<ServerFrame> = self.conn.recv().await.map_err(ClientError::Conn)?;
            let frame = frame.ok_or(ClientError::Conn(ConnError::Closed))?;
            if !matches!(frame.body, Reply::Event(Event::Keepalive)) {
                return Ok(frame.body);
            }
        }
    }
}

/// Explain a rejected handshake in terms of which side to upgrade.
fn version_message(major: u16, minor: u16, reason: &str) -> String {
    let side = match major.cmp(&PROTO_MAJOR) {
        std::cmp::Ordering::Less => "marbled is older than marblectl: upgrade marbled",
        std::cmp::Ordering::Greater => "marblectl is older than marbled: upgrade marblectl",
        std::cmp::Ordering::Equal => "versions differ",
    };
    format!(
        "protocol mismatch: marblectl speaks {PROTO_MAJOR}.{PROTO_MINOR}, marbled speaks {major}.{minor}; {side} ({reason})"
    )
}

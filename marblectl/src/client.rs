//! The typed client: connect, handshake, send one request, collect streamed replies.
//!
//! Connection failures are classified so the CLI can say what to do: a missing socket or a
//! refused connection means the daemon is not running (print the `launchctl` command); a
//! rejected handshake means a version mismatch (say which side is older).

use std::path::{Path, PathBuf};

use marble_proto::{
    ClientFrame, ConnError, ErrorKind, Event, FramedConn, Hello, PROTO_MAJOR, PROTO_MINOR, Reply,
    Request, Response, ServerFrame, Welcome, WireError,
};
use tokio::net::UnixStream;

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
}

impl Client {
    /// Connect and handshake.
    pub async fn connect(socket: &Path) -> Result<Client, ClientError> {
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
                ConnError::Rejected {
                    major,
                    minor,
                    reason,
                } => ClientError::VersionMismatch(version_message(major, minor, &reason)),
                other => ClientError::Conn(other),
            })?;
        Ok(Client {
            conn,
            welcome,
            next_id: 1,
        })
    }

    /// What the daemon said in the handshake.
    pub fn welcome(&self) -> &Welcome {
        &self.welcome
    }

    /// Send `request` and wait for its terminal reply; `on_event` sees streamed events.
    pub async fn call(
        &mut self,
        request: Request,
        mut on_event: impl FnMut(&Event),
    ) -> Result<Response, ClientError> {
        self.send(request).await?;
        loop {
            match self.next_reply().await? {
                Reply::Ok(resp) => return Ok(resp),
                Reply::Err(err) => return Err(ClientError::Daemon(err)),
                Reply::Event(event) => on_event(&event),
                Reply::EndOfStream => {
                    return Err(ClientError::Protocol(
                        "stream ended without an answer".into(),
                    ));
                }
            }
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

    /// The next reply frame.
    pub async fn next_reply(&mut self) -> Result<Reply, ClientError> {
        let frame: Option<ServerFrame> = self.conn.recv().await.map_err(ClientError::Conn)?;
        let frame = frame.ok_or(ClientError::Conn(ConnError::Closed))?;
        Ok(frame.body)
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

//! The accept loop and the per-connection `Handler`.
//!
//! A handler owns one connection: it reads the peer's kernel credentials, runs the
//! handshake (with a timeout, so a silent peer cannot hold a slot), then serves one request
//! at a time. It checks access and the request's bounds before anything reaches the actor,
//! answers malformed frames with an `InvalidRequest` error, and closes the connection on
//! framing errors (an oversize length prefix cannot be resynchronised). One bad client never
//! affects another: each connection is its own task and the actor is reached only through
//! bounded channels.
//!
//! Descriptor pressure (issue 15): connections are capped below the open-file limit
//! ([`limits::connection_cap`]) so the daemon's own work keeps descriptors; at the cap the
//! oldest idle connection is shed (`conns::ConnTable::make_room`), and when none is idle
//! the new client is told so in a `Rejected` handshake instead of waiting in the backlog. A
//! failing `accept` backs off exponentially and is logged at most once per 10 s.

mod conns;
pub mod limits;

use std::sync::Arc;
use std::time::{Duration, Instant};

use marble_proto::{
    ClientFrame, CodecError, ConnError, ErrorKind, Event, FramedConn, KEEPALIVE_INTERVAL_MS,
    MAX_FRAME_LEN, Reply, Request, ServerFrame, WireError, codec,
};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::actor::{DaemonHandle, Submitted};
use crate::peer::{Access, AccessPolicy, Peer};
use conns::{ConnGuard, ConnTable, Room};
use limits::{AcceptBackoff, LogThrottle};

pub use limits::MAX_CONNECTIONS;

/// How long a new connection has to send its hello.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a connection may sit between requests before the daemon closes it. A `watch`
/// stream or a request in progress is not idle.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a request frame may take to arrive once its first byte has.
pub const FRAME_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one reply frame may take to be written (a client that stopped reading).
pub const SEND_TIMEOUT: Duration = Duration::from_secs(30);
/// Connections being refused at once (each holds a descriptor for [`REFUSE_LINGER`]);
/// beyond this a connection over the cap is closed without an answer.
const MAX_REFUSING: usize = 8;
/// How long a refused connection is kept open for its hello, so the client's write does not
/// fail before it reads the refusal.
const REFUSE_LINGER: Duration = Duration::from_millis(500);
/// The first protocol minor whose clients understand [`Event::Keepalive`].
const KEEPALIVE_MINOR: u16 = 5;

/// Build facts sent in the handshake.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// Git revision (set `MARBLE_GIT_SHA` at build time; `unknown` otherwise).
pub const GIT_SHA: &str = match option_env!("MARBLE_GIT_SHA") {
    Some(sha) => sha,
    None => "unknown",
};

/// Accept connections until `shutdown`, then wait for handlers to finish.
pub async fn serve(
    listener: UnixListener,
    handle: DaemonHandle,
    policy: Arc<std::sync::RwLock<AccessPolicy>>,
    shutdown: CancellationToken,
) {
    let fd_limit = limits::open_file_limit();
    let cap = limits::connection_cap(fd_limit);
    tracing::info!(
        max_connections = cap,
        open_file_limit = fd_limit,
        "serving the control socket"
    );
    let table = Arc::new(ConnTable::default());
    let refusing = Arc::new(Semaphore::new(MAX_REFUSING));
    let tracker = TaskTracker::new();
    let mut backoff = AcceptBackoff::default();
    let mut throttle = LogThrottle::default();
    let mut next_conn: u64 = 0;
    loop {
        let accepted = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _)) => {
                backoff.succeeded();
                stream
            }
            Err(err) => {
                // EMFILE/ENFILE leave the connection in the backlog: retrying at once spins.
                let wait = backoff.failed();
                if let Some(suppressed) = throttle.allow(Instant::now()) {
                    tracing::warn!(
                        error = %err,
                        suppressed,
                        retry_in = ?wait,
                        open = table.len(),
                        "accept failed; backing off (at most one such line per 10 s)"
                    );
                }
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = tokio::time::sleep(wait) => continue,
                }
            }
        };
        next_conn += 1;
        let room = tokio::select! {
            () = shutdown.cancelled() => break,
            room = table.make_room(cap) => room,
        };
        match room {
            Room::Full => refuse(stream, cap, &refusing, &tracker),
            Room::Free | Room::Shed(_) => {
                if let Room::Shed(shed) = room {
                    tracing::debug!(shed, conn_id = next_conn, "shed the oldest idle connection");
                }
                let Some(handler) = Handler::new(&handle, &policy, &shutdown) else {
                    continue;
                };
                let guard = table.register(next_conn);
                let span =
                    tracing::debug_span!("conn", conn_id = next_conn, uid = tracing::field::Empty);
                tracker.spawn(handler.run(stream, guard).instrument(span));
            }
        }
    }
    // Stop accepting; in-flight handlers see `shutdown` and answer `Unavailable`.
    drop(listener);
    tracker.close();
    tracker.wait().await;
}

/// Answer a connection over the cap with a `Rejected` handshake naming the limit.
fn refuse(stream: UnixStream, cap: usize, refusing: &Arc<Semaphore>, tracker: &TaskTracker) {
    let Ok(permit) = Arc::clone(refusing).try_acquire_owned() else {
        // Already refusing as many as the descriptor reserve allows: close at once.
        tracing::debug!("connection limit reached and refusals saturated; closing");
        return;
    };
    tracing::info!(
        max_connections = cap,
        "connection limit reached with every connection busy; refusing a client"
    );
    tracker.spawn(async move {
        let mut conn = FramedConn::new(stream);
        let reason =
            format!("marbled is at its connection limit ({cap} connections, all busy); try again");
        if tokio::time::timeout(REFUSE_LINGER, conn.server_refuse(&reason))
            .await
            .is_ok_and(|sent| sent.is_ok())
        {
            let _ = tokio::time::timeout(REFUSE_LINGER, conn.recv_frame()).await;
        }
        drop(permit);
    });
}

/// One connection.
struct Handler {
    handle: DaemonHandle,
    policy: AccessPolicy,
    shutdown: CancellationToken,
    /// The client understands `Event::Keepalive` (its hello said minor 5 or later).
    keepalive: bool,
    /// The minor its hello announced: error kinds newer than that are sent as the older kind
    /// they replace (`WireError::for_client`).
    minor: u16,
}

type Conn = FramedConn<UnixStream>;

impl Handler {
    fn new(
        handle: &DaemonHandle,
        policy: &std::sync::RwLock<AccessPolicy>,
        shutdown: &CancellationToken,
    ) -> Option<Handler> {
        let Ok(policy) = policy.read().map(|p| p.clone()) else {
            tracing::error!("access policy lock poisoned; refusing connection");
            return None;
        };
        Some(Handler {
            handle: handle.clone(),
            policy,
            shutdown: shutdown.clone(),
            keepalive: false,
            minor: 0,
        })
    }

    async fn run(mut self, stream: UnixStream, guard: ConnGuard) {
        let peer = match stream.peer_cred() {
            Ok(cred) => Peer::from_ids(cred.uid(), cred.gid(), cred.pid()),
            Err(err) => {
                tracing::warn!(error = %err, "cannot read peer credentials; closing");
                return;
            }
        };
        tracing::Span::current().record("uid", peer.uid);
        let mut conn = FramedConn::new(stream);
        let handshake =
            tokio::time::timeout(HANDSHAKE_TIMEOUT, conn.server_handshake(VERSION, GIT_SHA));
        let hello = tokio::select! {
            () = guard.shed().cancelled() => {
                tracing::debug!(user = %peer.user, "shed during the handshake");
                return;
            }
            hello = handshake => hello,
        };
        match hello {
            Ok(Ok(hello)) => {
                tracing::debug!(client = %hello.client_version, "handshake ok");
                self.keepalive = hello.minor >= KEEPALIVE_MINOR;
                self.minor = hello.minor;
            }
            Ok(Err(err)) => {
                tracing::info!(error = %err, user = %peer.user, "handshake failed; closing");
                return;
            }
            Err(_) => {
                tracing::info!(user = %peer.user, "no handshake within the timeout; closing");
                return;
            }
        }
        let access = self.policy.access(&peer);
        if let Err(err) = self.serve(&mut conn, &peer, access, &guard).await {
            tracing::debug!(error = %err, "connection ended");
        }
    }

    async fn serve(
        &self,
        conn: &mut Conn,
        peer: &Peer,
        access: Access,
        guard: &ConnGuard,
    ) -> Result<(), ConnError> {
        loop {
            guard.set_idle(true);
            let frame = tokio::select! {
                () = self.shutdown.cancelled() => return Ok(()),
                () = guard.shed().cancelled() => {
                    tracing::debug!("idle connection shed to make room");
                    return Ok(());
                }
                frame = conn.recv_frame_within(IDLE_TIMEOUT, FRAME_TIMEOUT) => frame?,
            };
            let Some(frame) = frame else { return Ok(()) };
            guard.set_idle(false);
            let ClientFrame { id, body } = match codec::decode::<ClientFrame>(&frame) {
                Ok(frame) => frame,
                Err(err) => {
                    let reply = WireError::new(
                        ErrorKind::InvalidRequest,
                        format!("malformed request frame: {err}"),
                    );
                    send(conn, 0, Reply::Err(reply)).await?;
                    continue;
                }
            };
            if let Some(denied) = check_access(access, peer, &body) {
                send(conn, id, Reply::Err(denied)).await?;
                continue;
            }
            if let Err(invalid) = body.validate() {
                send(conn, id, Reply::Err(invalid)).await?;
                continue;
            }
            let span = tracing::debug_span!("req", req_id = id, kind = body.kind());
            self.dispatch(conn, peer, id, body).instrument(span).await?;
        }
    }

    async fn dispatch(
        &self,
        conn: &mut Conn,
        peer: &Peer,
        id: u32,
        body: Request,
    ) -> Result<(), ConnError> {
        let kind = body.kind();
        match body {
            Request::Status
            | Request::ListVms
            | Request::ShowVm { .. }
            | Request::Metrics
            | Request::CiStatus
            | Request::RunnerStatus
            | Request::DemandPoller => {
                let reply = match self.handle.query(body).await {
                    Ok(resp) => Reply::Ok(resp),
                    Err(err) => Reply::Err(err.for_client(self.minor)),
                };
                answer(conn, id, kind, reply).await
            }
            Request::WatchEvents => self.watch(conn, id).await,
            // A slot's holder shows up in decisions and refusals ("granted to …"): as
            // "user root (uid 0)", which cannot be read as team ROOT. Other requests
            // attribute by the bare user name (locks, drain: the JSON `by` fields).
            other @ Request::RequestSlot { .. } => {
                let holder = format!("user {} (uid {})", peer.user, peer.uid);
                match self.handle.submit(&holder, other).await {
                    Ok(submitted) => self.wait(conn, id, kind, submitted).await,
                    Err(err) => send(conn, id, Reply::Err(err)).await,
                }
            }
            other => match self.handle.submit(&peer.user, other).await {
                Ok(submitted) => self.wait(conn, id, kind, submitted).await,
                Err(err) => send(conn, id, Reply::Err(err.for_client(self.minor))).await,
            },
        }
    }

    /// Forward progress until the terminal answer; a client that disconnects cancels.
    /// Keepalives fill silences, so the client can tell a long wait from a stalled daemon.
    async fn wait(
        &self,
        conn: &mut Conn,
        id: u32,
        kind: &'static str,
        mut sub: Submitted,
    ) -> Result<(), ConnError> {
        let period = Duration::from_millis(KEEPALIVE_INTERVAL_MS);
        let mut keepalive = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        keepalive.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            // Biased, progress before the answer: a job sends its last progress and then its
            // answer; an unbiased select could pick the answer first and drop the rest.
            tokio::select! {
                biased;
                () = self.shutdown.cancelled() => {
                    let err = WireError::new(ErrorKind::Unavailable, "marbled is shutting down");
                    return send(conn, id, Reply::Err(err)).await;
                }
                Some(message) = sub.progress.recv() => {
                    send(conn, id, crate::actor::progress_event(message)).await?;
                    keepalive.reset();
                }
                done = &mut sub.done => {
                    let reply = match done {
                        Ok(Ok(resp)) => Reply::Ok(resp),
                        Ok(Err(err)) => Reply::Err(err.for_client(self.minor)),
                        Err(_) => Reply::Err(WireError::new(
                            ErrorKind::Unavailable,
                            "marbled is shutting down",
                        )),
                    };
                    return answer(conn, id, kind, reply).await;
                }
                frame = conn.recv_frame() => {
                    match frame {
                        Ok(Some(_)) => {
                            let err = WireError::new(
                                ErrorKind::InvalidRequest,
                                "one request at a time per connection in protocol v1",
                            );
                            send(conn, 0, Reply::Err(err)).await?;
                        }
                        Ok(None) | Err(_) => {
                            tracing::debug!(req = sub.req.0, "client went away; cancelling");
                            self.handle.cancel(sub.req).await;
                            return Ok(());
                        }
                    }
                }
                _ = keepalive.tick(), if self.keepalive => {
                    send(conn, id, Reply::Event(Event::Keepalive)).await?;
                }
            }
        }
    }

    /// A watch stream: never idle, never shed, no idle deadline (quiet is legitimate).
    async fn watch(&self, conn: &mut Conn, id: u32) -> Result<(), ConnError> {
        let mut events = match self.handle.watch().await {
            Ok(rx) => rx,
            Err(err) => return send(conn, id, Reply::Err(err)).await,
        };
        loop {
            tokio::select! {
                () = self.shutdown.cancelled() => return send(conn, id, Reply::EndOfStream).await,
                event = events.recv() => match event {
                    Some(event) => send(conn, id, Reply::Event(event)).await?,
                    None => {
                        // Dropped as too slow, or the actor stopped.
                        send(conn, id, Reply::Event(Event::Lagged { dropped: 1 })).await?;
                        return send(conn, id, Reply::EndOfStream).await;
                    }
                },
                frame = conn.recv_frame() => match frame {
                    Ok(Some(_)) => {}
                    Ok(None) | Err(_) => return Ok(()),
                },
            }
        }
    }
}

/// The access check, separate so it can be tested without sockets.
fn check_access(access: Access, peer: &Peer, request: &Request) -> Option<WireError> {
    match access {
        Access::Admin => None,
        Access::ReadOnly if !request.is_mutating() => None,
        Access::ReadOnly => Some(WireError::new(
            ErrorKind::PermissionDenied,
            format!(
                "permission denied: user {} (uid {}) may only read; `{}` needs an admin (daemon.admin_users)",
                peer.user,
                peer.uid,
                request.kind()
            ),
        )),
        Access::None => Some(WireError::new(
            ErrorKind::PermissionDenied,
            format!(
                "permission denied: user {} (uid {}) is not in the socket group (daemon.socket_group)",
                peer.user, peer.uid
            ),
        )),
    }
}

/// The terminal answer to request `kind`: one that does not fit a frame becomes an explicit
/// `Internal` error instead of a dropped connection.
async fn answer(conn: &mut Conn, id: u32, kind: &str, body: Reply) -> Result<(), ConnError> {
    let frame = ServerFrame { id, body };
    match codec::encode(&frame) {
        Ok(bytes) => send_bytes(conn, bytes).await,
        Err(CodecError::TooLarge { len, max }) => {
            tracing::error!(
                kind,
                len,
                max,
                "reply over the frame limit; sending an error instead"
            );
            let err = too_large(kind, len, max);
            send(conn, id, Reply::Err(err)).await
        }
        Err(err) => Err(err.into()),
    }
}

fn too_large(kind: &str, len: usize, max: usize) -> WireError {
    WireError::new(
        ErrorKind::Internal,
        format!(
            "the answer to `{kind}` is {len} bytes, over the {max}-byte frame limit, so marbled \
             could not send it; a stored field is too big (e.g. a lock, pause or drain reason \
             from an older marbled: replace it with a shorter one)"
        ),
    )
}

async fn send(conn: &mut Conn, id: u32, body: Reply) -> Result<(), ConnError> {
    let bytes = match codec::encode(&ServerFrame { id, body }) {
        Ok(bytes) => bytes,
        // Events and errors are small; should one not be, say so rather than go silent.
        Err(CodecError::TooLarge { len, max }) => codec::encode(&ServerFrame {
            id,
            body: Reply::Err(too_large("this request", len, max)),
        })?,
        Err(err) => return Err(err.into()),
    };
    send_bytes(conn, bytes).await
}

async fn send_bytes(conn: &mut Conn, bytes: Vec<u8>) -> Result<(), ConnError> {
    debug_assert!(bytes.len() <= MAX_FRAME_LEN);
    match tokio::time::timeout(SEND_TIMEOUT, conn.send_frame(bytes)).await {
        Ok(sent) => sent,
        Err(_) => Err(ConnError::Io(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("the client read nothing for {SEND_TIMEOUT:?}"),
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer() -> Peer {
        Peer {
            uid: 1000,
            gid: 1000,
            pid: None,
            user: "bob".into(),
        }
    }

    #[test]
    fn read_only_peers_can_query_but_not_mutate() {
        assert!(check_access(Access::ReadOnly, &peer(), &Request::Status).is_none());
        let denied = check_access(
            Access::ReadOnly,
            &peer(),
            &Request::StopVm {
                vm: "x".into(),
                force: false,
            },
        )
        .expect("denied");
        assert_eq!(denied.kind, ErrorKind::PermissionDenied);
        assert!(denied.message.contains("bob"));
        // Operators see this text verbatim: it must say what happened, not only why.
        assert!(
            denied.message.starts_with("permission denied: "),
            "{}",
            denied.message
        );
        assert!(check_access(Access::None, &peer(), &Request::Status).is_some());
        assert!(check_access(Access::Admin, &peer(), &Request::Resume).is_none());
    }
}

//! The accept loop and the per-connection `Handler`.
//!
//! A handler owns one connection: it reads the peer's kernel credentials, runs the
//! handshake (with a timeout, so a silent peer cannot hold a slot), then serves one request
//! at a time. It checks access before anything reaches the actor, answers malformed frames
//! with an `InvalidRequest` error, and closes the connection on framing errors (an oversize
//! length prefix cannot be resynchronised). One bad client never affects another: each
//! connection is its own task and the actor is reached only through bounded channels.

use std::sync::Arc;
use std::time::Duration;

use marble_proto::{
    ClientFrame, ConnError, ErrorKind, Event, FramedConn, Reply, Request, ServerFrame, WireError,
    codec,
};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::actor::{DaemonHandle, Submitted};
use crate::peer::{Access, AccessPolicy, Peer};

/// How long a new connection has to send its hello.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// Most connections served at once; further clients wait in the kernel's accept backlog.
pub const MAX_CONNECTIONS: usize = 1024;

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
    let limit = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let tracker = TaskTracker::new();
    let mut next_conn: u64 = 0;
    loop {
        let permit = tokio::select! {
            () = shutdown.cancelled() => break,
            permit = limit.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let accepted = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(err) => {
                tracing::warn!(error = %err, "accept failed");
                continue;
            }
        };
        next_conn += 1;
        let access_policy = policy.read().map(|p| p.clone());
        let Ok(access_policy) = access_policy else {
            tracing::error!("access policy lock poisoned; refusing connection");
            continue;
        };
        let handler = Handler {
            handle: handle.clone(),
            policy: access_policy,
            shutdown: shutdown.clone(),
        };
        let span = tracing::debug_span!("conn", conn_id = next_conn, uid = tracing::field::Empty);
        tracker.spawn(
            async move {
                handler.run(stream).await;
                drop(permit);
            }
            .instrument(span),
        );
    }
    // Stop accepting; in-flight handlers see `shutdown` and answer `Unavailable`.
    drop(listener);
    tracker.close();
    tracker.wait().await;
}

/// One connection.
struct Handler {
    handle: DaemonHandle,
    policy: AccessPolicy,
    shutdown: CancellationToken,
}

type Conn = FramedConn<UnixStream>;

impl Handler {
    async fn run(self, stream: UnixStream) {
        let peer = match stream.peer_cred() {
            Ok(cred) => Peer::from_ids(cred.uid(), cred.gid(), cred.pid()),
            Err(err) => {
                tracing::warn!(error = %err, "cannot read peer credentials; closing");
                return;
            }
        };
        tracing::Span::current().record("uid", peer.uid);
        let mut conn = FramedConn::new(stream);
        match tokio::time::timeout(HANDSHAKE_TIMEOUT, conn.server_handshake(VERSION, GIT_SHA)).await
        {
            Ok(Ok(hello)) => tracing::debug!(client = %hello.client_version, "handshake ok"),
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
        if let Err(err) = self.serve(&mut conn, &peer, access).await {
            tracing::debug!(error = %err, "connection ended");
        }
    }

    async fn serve(&self, conn: &mut Conn, peer: &Peer, access: Access) -> Result<(), ConnError> {
        loop {
            let frame = tokio::select! {
                () = self.shutdown.cancelled() => return Ok(()),
                frame = conn.recv_frame() => frame?,
            };
            let Some(frame) = frame else { return Ok(()) };
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
        match body {
            Request::Status
            | Request::ListVms
            | Request::ShowVm { .. }
            | Request::Metrics
            | Request::CiStatus => {
                let reply = match self.handle.query(body).await {
                    Ok(resp) => Reply::Ok(resp),
                    Err(err) => Reply::Err(err),
                };
                send(conn, id, reply).await
            }
            Request::WatchEvents => self.watch(conn, id).await,
            other => match self.handle.submit(&peer.user, other).await {
                Ok(submitted) => self.wait(conn, id, submitted).await,
                Err(err) => send(conn, id, Reply::Err(err)).await,
            },
        }
    }

    /// Forward progress until the terminal answer; a client that disconnects cancels.
    async fn wait(&self, conn: &mut Conn, id: u32, mut sub: Submitted) -> Result<(), ConnError> {
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
                }
                done = &mut sub.done => {
                    let reply = match done {
                        Ok(Ok(resp)) => Reply::Ok(resp),
                        Ok(Err(err)) => Reply::Err(err),
                        Err(_) => Reply::Err(WireError::new(
                            ErrorKind::Unavailable,
                            "marbled is shutting down",
                        )),
                    };
                    return send(conn, id, reply).await;
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
            }
        }
    }

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

async fn send(conn: &mut Conn, id: u32, body: Reply) -> Result<(), ConnError> {
    conn.send(&ServerFrame { id, body }).await
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

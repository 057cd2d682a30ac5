//! Who is on the other end of a connection, and what they may do.
//!
//! Credentials come from the kernel (`SO_PEERCRED` on Linux, `LOCAL_PEERCRED`/`getpeereid` on
//! macOS, both behind tokio's `UnixStream::peer_cred`), never from anything the client says.
//! Read-only requests need membership of the socket group (the 0660 socket already enforces
//! that at connect time; it is checked again here so a wrong file mode cannot widen access);
//! mutating requests need root, the daemon's own user, or a configured admin user.

use nix::unistd::{Gid, Group, Uid, User};

/// The verified identity of a peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    /// Peer uid.
    pub uid: u32,
    /// Peer primary gid.
    pub gid: u32,
    /// Peer pid, when the platform reports it.
    pub pid: Option<i32>,
    /// User name (or the uid as text when the user has no name).
    pub user: String,
}

impl Peer {
    /// Build from kernel credentials, looking the user name up.
    pub fn from_ids(uid: u32, gid: u32, pid: Option<i32>) -> Self {
        let user = User::from_uid(Uid::from_raw(uid))
            .ok()
            .flatten()
            .map_or_else(|| uid.to_string(), |u| u.name);
        Self {
            uid,
            gid,
            pid,
            user,
        }
    }
}

/// The access rules, fixed at start (admin users are reloadable with SIGHUP).
#[derive(Debug, Clone)]
pub struct AccessPolicy {
    daemon_uid: u32,
    group: Option<Gid>,
    group_members: Vec<String>,
    admins: Vec<String>,
}

/// What a peer may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Nothing: not in the socket group.
    None,
    /// Read-only requests.
    ReadOnly,
    /// Everything.
    Admin,
}

impl AccessPolicy {
    /// Rules for a daemon running as the current user with the given socket group.
    pub fn new(group: Option<Gid>, admins: Vec<String>) -> Self {
        let group_members = group
            .and_then(|gid| Group::from_gid(gid).ok().flatten())
            .map(|g| g.mem)
            .unwrap_or_default();
        Self {
            daemon_uid: Uid::current().as_raw(),
            group,
            group_members,
            admins,
        }
    }

    /// Decide a peer's access.
    pub fn access(&self, peer: &Peer) -> Access {
        if peer.uid == 0 || peer.uid == self.daemon_uid || self.admins.contains(&peer.user) {
            return Access::Admin;
        }
        let in_group = match self.group {
            // No configured group: the socket is owned by the daemon's primary group.
            None => peer.gid == nix::unistd::Gid::current().as_raw(),
            Some(gid) => peer.gid == gid.as_raw() || self.group_members.contains(&peer.user),
        };
        if in_group {
            Access::ReadOnly
        } else {
            Access::None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(admins: &[&str]) -> AccessPolicy {
        AccessPolicy {
            daemon_uid: 501,
            group: Some(Gid::from_raw(80)),
            group_members: vec!["jenkins".into()],
            admins: admins.iter().map(|s| (*s).to_owned()).collect(),
        }
    }

    fn peer(uid: u32, gid: u32, user: &str) -> Peer {
        Peer {
            uid,
            gid,
            pid: None,
            user: user.into(),
        }
    }

    #[test]
    fn root_daemon_user_and_admins_are_admin() {
        let p = policy(&["alice"]);
        assert_eq!(p.access(&peer(0, 0, "root")), Access::Admin);
        assert_eq!(p.access(&peer(501, 20, "sftnight")), Access::Admin);
        assert_eq!(p.access(&peer(502, 20, "alice")), Access::Admin);
    }

    #[test]
    fn group_members_read_only_others_nothing() {
        let p = policy(&[]);
        assert_eq!(p.access(&peer(600, 80, "bob")), Access::ReadOnly);
        assert_eq!(p.access(&peer(601, 20, "jenkins")), Access::ReadOnly);
        assert_eq!(p.access(&peer(602, 20, "mallory")), Access::None);
    }
}

//! The guest filesystem as the shell sees it: guest paths map into the VM's guest root (a
//! host directory, see [`Vm::guest_root`]); `..` never leaves it, symbolic links are stored
//! with targets rewritten to stay inside it. Ownership is not a host property: it lives in
//! [`Vm::guest_owners`] (absent = `root:wheel`), and files a non-root user creates are theirs.
//!
//! [`Vm::guest_root`]: crate::prlsim::model::Vm::guest_root
//! [`Vm::guest_owners`]: crate::prlsim::model::Vm::guest_owners

use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use super::Session;
use super::state::Sink;

impl Session<'_> {
    /// Absolute, normalized guest path (relative to the cwd, `~` for the home).
    pub fn normalize(&self, guest: &str) -> String {
        let home = self.home();
        let p = if guest == "~" {
            home
        } else if let Some(rest) = guest.strip_prefix("~/") {
            format!("{home}/{rest}")
        } else if guest.starts_with('/') {
            guest.to_owned()
        } else {
            format!("{}/{guest}", self.st.cwd)
        };
        normalize_abs(&p)
    }

    /// Host path of a guest path.
    pub fn host_path(&self, guest: &str) -> PathBuf {
        self.vm
            .guest_root()
            .join(self.normalize(guest).trim_start_matches('/'))
    }

    /// The current user's home directory.
    pub fn home(&self) -> String {
        home_of(&self.st.user.name, self.st.user.uid)
    }

    /// Read a guest file (`/dev/null` is empty).
    pub fn read_guest(&self, path: &str) -> Result<Vec<u8>, &'static str> {
        if path == "/dev/null" {
            return Ok(Vec::new());
        }
        let p = self.host_path(path);
        if p.is_dir() {
            return Err("Is a directory");
        }
        std::fs::read(&p).map_err(|_| "No such file or directory")
    }

    /// Create (`append` = keep contents) a guest file for writing; new files get
    /// `0666 & !umask` and the current user as owner.
    pub fn open_write(&mut self, path: &str, append: bool) -> Result<Sink, &'static str> {
        if path == "/dev/null" {
            return Ok(Sink::Null);
        }
        let p = self.host_path(path);
        if !p.parent().is_some_and(Path::is_dir) {
            return Err("No such file or directory");
        }
        if p.is_dir() {
            return Err("Is a directory");
        }
        let existed = p.exists();
        let mode = 0o666 & !self.st.umask;
        std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .append(append)
            .truncate(!append)
            .mode(mode)
            .open(&p)
            .map_err(|_| "Permission denied")?;
        if !existed {
            // The host process umask must not widen or narrow the guest's.
            let _ = std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode));
            self.created(path);
        }
        Ok(Sink::File(p))
    }

    /// Write (or append to) a guest file.
    pub fn write_guest(
        &mut self,
        path: &str,
        data: &[u8],
        append: bool,
    ) -> Result<(), &'static str> {
        match self.open_write(path, append)? {
            Sink::File(p) => append_host(&p, data),
            _ => Ok(()),
        }
    }

    /// Record that the current user created `path` (root-created files stay unrecorded).
    pub fn created(&mut self, path: &str) {
        let key = self.normalize(path);
        if self.st.user.uid == 0 {
            self.vm.guest_owners.remove(&key);
        } else {
            let owner = format!("{}:staff", self.st.user.name);
            self.vm.guest_owners.insert(key, owner);
        }
    }

    /// `(user, group)` owning a guest path.
    pub fn owner(&self, path: &str) -> (String, String) {
        let key = self.normalize(path);
        match self
            .vm
            .guest_owners
            .get(&key)
            .and_then(|o| o.split_once(':'))
        {
            Some((u, g)) => (u.to_owned(), g.to_owned()),
            None => ("root".to_owned(), "wheel".to_owned()),
        }
    }

    /// Set the owner of a guest path.
    pub fn set_owner(&mut self, path: &str, user: &str, group: &str) {
        let key = self.normalize(path);
        if user == "root" && group == "wheel" {
            self.vm.guest_owners.remove(&key);
        } else {
            self.vm.guest_owners.insert(key, format!("{user}:{group}"));
        }
    }

    /// Forget owners under a removed path.
    pub fn forget_owners(&mut self, path: &str) {
        let key = self.normalize(path);
        let prefix = format!("{key}/");
        self.vm
            .guest_owners
            .retain(|k, _| *k != key && !k.starts_with(&prefix));
    }

    /// Move owner records from `from` to `to` (after a rename).
    pub fn move_owners(&mut self, from: &str, to: &str) {
        let (from, to) = (self.normalize(from), self.normalize(to));
        let prefix = format!("{from}/");
        let moved: Vec<(String, String)> = self
            .vm
            .guest_owners
            .iter()
            .filter(|(k, _)| **k == from || k.starts_with(&prefix))
            .map(|(k, v)| (format!("{to}{}", &k[from.len()..]), v.clone()))
            .collect();
        self.forget_owners(&from);
        self.forget_owners(&to);
        self.vm.guest_owners.extend(moved);
    }

    /// Entry names of a guest directory (`""` = the cwd).
    pub fn list_dir(&self, dir: &str) -> Option<Vec<String>> {
        let dir = if dir.is_empty() { "." } else { dir };
        let rd = std::fs::read_dir(self.host_path(dir)).ok()?;
        Some(
            rd.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect(),
        )
    }

    /// Create a symbolic link at guest path `link` pointing to guest path `target`; the host
    /// link is relative so it resolves inside the guest root.
    pub fn symlink(&mut self, target: &str, link: &str) -> std::io::Result<()> {
        let link_abs = self.normalize(link);
        let target_abs = if target.starts_with('/') {
            normalize_abs(target)
        } else {
            let dir = link_abs.rsplit_once('/').map_or("", |(d, _)| d);
            normalize_abs(&format!("{dir}/{target}"))
        };
        let depth = link_abs.matches('/').count().saturating_sub(1);
        let rel = format!(
            "{}{}",
            "../".repeat(depth),
            target_abs.trim_start_matches('/')
        );
        std::os::unix::fs::symlink(rel, self.host_path(&link_abs))?;
        self.created(&link_abs);
        Ok(())
    }

    /// The guest path a guest symbolic link points to.
    pub fn read_link(&self, link: &str) -> Option<String> {
        let link_abs = self.normalize(link);
        let t = std::fs::read_link(self.host_path(&link_abs)).ok()?;
        let dir = link_abs.rsplit_once('/').map_or("", |(d, _)| d);
        Some(normalize_abs(&format!("{dir}/{}", t.to_string_lossy())))
    }
}

/// Append bytes to a host file.
pub fn append_host(p: &Path, data: &[u8]) -> Result<(), &'static str> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(p)
        .map_err(|_| "Permission denied")?;
    f.write_all(data).map_err(|_| "Input/output error")
}

/// Home directory of a guest user.
pub fn home_of(name: &str, uid: u32) -> String {
    if uid == 0 {
        "/var/root".to_owned()
    } else {
        format!("/Users/{name}")
    }
}

/// Lexically normalized absolute path (`..` at the root stays at the root).
pub fn normalize_abs(p: &str) -> String {
    let mut parts: Vec<String> = Vec::new();
    for c in Path::new(p).components() {
        match c {
            Component::Normal(s) => parts.push(s.to_string_lossy().into_owned()),
            Component::ParentDir => {
                parts.pop();
            }
            _ => {}
        }
    }
    format!("/{}", parts.join("/"))
}

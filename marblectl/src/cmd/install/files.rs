//! The file side of install, upgrade and uninstall: resolving the [`Layout`], writing each
//! file atomically with its mode and owner, generating the config, completions and man pages,
//! and removing exactly what install put there (never config, secrets, state or logs).

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use super::{Layout, SECRET_FILES, plist};
use crate::cli::InstallArgs;
use crate::exit::Exit;

/// Why an install step failed; each names the path or command it was about.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    /// Bad arguments.
    #[error("{0}")]
    Usage(String),
    /// `upgrade`/`uninstall` found no install.
    #[error("no MARBLE install at {path} (run `marblectl install` first, same --prefix/--destdir)")]
    NotInstalled {
        /// The plist looked for.
        path: PathBuf,
    },
    /// Writing or creating a file or directory failed.
    #[error("cannot {what} {path}")]
    Io {
        /// What was being done ("write", "create directory", "set owner of").
        what: &'static str,
        /// The path.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The installed plist could not be read or the new one written.
    #[error("plist {path}")]
    Plist {
        /// The plist.
        path: PathBuf,
        /// Cause.
        #[source]
        source: ::plist::Error,
    },
    /// A program the install runs failed (`marbled print-default-config`, `launchctl`).
    #[error("{command} failed: {detail}")]
    Command {
        /// The command line.
        command: String,
        /// Exit status and stderr, or the spawn error.
        detail: String,
    },
}

impl InstallError {
    /// Its exit code (docs/OPERATIONS.md).
    pub fn exit(&self) -> Exit {
        match self {
            InstallError::Usage(_) => Exit::Usage,
            InstallError::NotInstalled { .. } | InstallError::Command { .. } => Exit::Unavailable,
            InstallError::Io { source, .. }
                if source.kind() == std::io::ErrorKind::PermissionDenied =>
            {
                Exit::NoPerm
            }
            InstallError::Io { what, .. } if what.starts_with("create") => Exit::CantCreate,
            InstallError::Io { .. } => Exit::IoErr,
            InstallError::Plist { .. } => Exit::DataErr,
        }
    }
}

/// The error and its sources joined by ": ".
pub fn chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> InstallError {
    let path = path.to_owned();
    move |source| InstallError::Io { what, path, source }
}

/// The layout `install` writes, from its flags.
pub fn layout_for_install(args: &InstallArgs) -> Result<Layout, InstallError> {
    if !args.prefix.is_absolute() {
        return Err(InstallError::Usage(format!(
            "--prefix {} must be an absolute path (launchd runs the daemon from it)",
            args.prefix.display()
        )));
    }
    for (flag, name) in [("--user", &args.user), ("--group", &args.group)] {
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
        {
            return Err(InstallError::Usage(format!(
                "{flag} {name:?}: not a user or group name"
            )));
        }
    }
    let home = nix::unistd::User::from_name(&args.user)
        .ok()
        .flatten()
        .map_or_else(|| PathBuf::from("/Users").join(&args.user), |u| u.dir);
    Ok(Layout {
        destdir: args.destdir.clone().unwrap_or_else(|| PathBuf::from("/")),
        prefix: args.prefix.clone(),
        user: args.user.clone(),
        group: args.group.clone(),
        socket_group: args
            .socket_group
            .clone()
            .unwrap_or_else(|| args.group.clone()),
        home,
    })
}

/// The layout of an existing install, read back from its plist (user, group, home).
pub fn installed_layout(destdir: Option<&Path>, prefix: &Path) -> Result<Layout, InstallError> {
    let mut layout = Layout {
        destdir: destdir.map_or_else(|| PathBuf::from("/"), Path::to_owned),
        prefix: prefix.to_owned(),
        user: String::new(),
        group: String::new(),
        socket_group: String::new(),
        home: PathBuf::new(),
    };
    let path = layout.host(&layout.plist());
    if !path.exists() {
        return Err(InstallError::NotInstalled { path });
    }
    let dict = read_plist(&path)?;
    let text = |d: &::plist::Dictionary, key: &str| {
        d.get(key)
            .and_then(|v| v.as_string())
            .unwrap_or_default()
            .to_owned()
    };
    layout.user = text(&dict, "UserName");
    layout.group = text(&dict, "GroupName");
    layout.socket_group = layout.group.clone();
    if let Some(env) = dict
        .get("EnvironmentVariables")
        .and_then(|v| v.as_dictionary())
    {
        layout.home = PathBuf::from(text(env, "HOME"));
    }
    Ok(layout)
}

/// The installed plist's top-level dictionary.
pub fn read_plist(path: &Path) -> Result<::plist::Dictionary, InstallError> {
    let plist_err = |source| InstallError::Plist {
        path: path.to_owned(),
        source,
    };
    ::plist::Value::from_file(path)
        .map_err(plist_err)?
        .into_dictionary()
        .ok_or_else(|| InstallError::Usage(format!("{}: top level is not a dict", path.display())))
}

/// Where the new binaries come from: `--from`, else the directory of this marblectl (the
/// unpacked release tarball's `bin/`).
pub fn source_dir(from: Option<&Path>) -> Result<PathBuf, InstallError> {
    let dir = match from {
        Some(dir) => dir.to_owned(),
        None => std::env::current_exe()
            .map_err(io("find the directory of", Path::new("marblectl")))?
            .parent()
            .map(Path::to_owned)
            .unwrap_or_default(),
    };
    for name in ["marbled", "marblectl"] {
        if !dir.join(name).is_file() {
            return Err(InstallError::Usage(format!(
                "{} has no {name} binary (pass --from DIR: the release's bin/ or target/release)",
                dir.display()
            )));
        }
    }
    Ok(dir)
}

/// Who owns an installed path.
#[derive(Debug, Clone, Copy)]
enum Owner {
    /// root, group 0 (wheel): what launchd requires of a LaunchDaemon plist, and binaries.
    Root,
    /// The service user and its group.
    Service,
    /// The service user and the socket group (the directory holding the socket).
    ServiceSocket,
}

/// Resolved owners; `None` where this process may not or cannot chown (not root, or the
/// user does not exist here: a `--destdir` staged for another host).
struct Owners {
    root: Option<(u32, u32)>,
    service: Option<(u32, u32)>,
    socket: Option<(u32, u32)>,
}

impl Owners {
    fn resolve(layout: &Layout) -> Owners {
        if !nix::unistd::geteuid().is_root() {
            eprintln!(
                "marblectl: not root: files keep this user as owner (owners are set when run as root)"
            );
            return Owners {
                root: None,
                service: None,
                socket: None,
            };
        }
        let uid = nix::unistd::User::from_name(&layout.user)
            .ok()
            .flatten()
            .map(|u| u.uid.as_raw());
        let gid = |g: &str| {
            nix::unistd::Group::from_name(g)
                .ok()
                .flatten()
                .map(|g| g.gid.as_raw())
        };
        let pair = |g: &str| uid.zip(gid(g));
        let owners = Owners {
            root: Some((0, 0)),
            service: pair(&layout.group),
            socket: pair(&layout.socket_group),
        };
        if owners.service.is_none() || owners.socket.is_none() {
            eprintln!(
                "marblectl: warning: {}:{} (socket group {}) unknown here: service files keep root as owner",
                layout.user, layout.group, layout.socket_group
            );
        }
        owners
    }

    fn of(&self, owner: Owner) -> Option<(u32, u32)> {
        match owner {
            Owner::Root => self.root,
            Owner::Service => self.service,
            Owner::ServiceSocket => self.socket,
        }
    }
}

fn set_owner_mode(
    path: &Path,
    owners: &Owners,
    owner: Owner,
    mode: u32,
) -> Result<(), InstallError> {
    if let Some((uid, gid)) = owners.of(owner) {
        std::os::unix::fs::chown(path, Some(uid), Some(gid)).map_err(io("set owner of", path))?;
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(io("set mode of", path))
}

/// Write `bytes` to `path` (under the destdir) atomically: a temp file in the same directory,
/// mode and owner set, fsync, rename. A running binary keeps its old inode.
fn put(
    layout: &Layout,
    owners: &Owners,
    path: &Path,
    bytes: &[u8],
    owner: Owner,
    mode: u32,
) -> Result<(), InstallError> {
    let target = layout.host(path);
    let dir = target.parent().unwrap_or(Path::new("/"));
    std::fs::create_dir_all(dir).map_err(io("create directory", dir))?;
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.marble-{}", std::process::id()));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io("create", &tmp))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(io("write", &tmp))?;
    drop(file);
    set_owner_mode(&tmp, owners, owner, mode)?;
    std::fs::rename(&tmp, &target).map_err(io("replace", &target))
}

fn dir(
    layout: &Layout,
    owners: &Owners,
    path: &Path,
    owner: Owner,
    mode: u32,
) -> Result<(), InstallError> {
    let target = layout.host(path);
    std::fs::create_dir_all(&target).map_err(io("create directory", &target))?;
    set_owner_mode(&target, owners, owner, mode)
}

/// Everything: programs (binaries, plist, newsyslog, completions, man pages), then the config
/// directory, token files, state and log directories (created, never overwritten).
pub fn install_all(layout: &Layout, from: &Path) -> Result<(), InstallError> {
    let owners = Owners::resolve(layout);
    write_programs(layout, &owners, from)?;
    dir(layout, &owners, &layout.config_dir(), Owner::Root, 0o755)?;
    let config = layout.host(&layout.config_file());
    if config.exists() {
        eprintln!("marblectl: kept {}", layout.config_file().display());
    } else {
        let text = default_config(layout, from)?;
        put(
            layout,
            &owners,
            &layout.config_file(),
            text.as_bytes(),
            Owner::Root,
            0o644,
        )?;
    }
    for name in SECRET_FILES {
        secret_file(layout, &owners, &layout.config_dir().join(name))?;
    }
    // 0750: the socket inside is reachable by the socket group only.
    dir(
        layout,
        &owners,
        &layout.state_dir(),
        Owner::ServiceSocket,
        0o750,
    )?;
    dir(layout, &owners, &layout.log_dir(), Owner::Service, 0o755)
}

/// `upgrade`: the programs only (config, secrets, state untouched).
pub fn install_programs(layout: &Layout, from: &Path) -> Result<(), InstallError> {
    let owners = Owners::resolve(layout);
    write_programs(layout, &owners, from)
}

fn write_programs(layout: &Layout, owners: &Owners, from: &Path) -> Result<(), InstallError> {
    for name in ["marbled", "marblectl"] {
        let src = from.join(name);
        let bytes = std::fs::read(&src).map_err(io("read", &src))?;
        put(
            layout,
            owners,
            &layout.bin().join(name),
            &bytes,
            Owner::Root,
            0o755,
        )?;
    }
    let plist_path = layout.plist();
    let xml = plist::daemon_plist_xml(layout).map_err(|source| InstallError::Plist {
        path: plist_path.clone(),
        source,
    })?;
    put(layout, owners, &plist_path, &xml, Owner::Root, 0o644)?;
    let conf = plist::newsyslog_conf(layout);
    put(
        layout,
        owners,
        &layout.newsyslog(),
        conf.as_bytes(),
        Owner::Root,
        0o644,
    )?;
    for (shell, path) in layout.completions() {
        let mut buf = Vec::new();
        clap_complete::generate(shell, &mut crate::command(), "marblectl", &mut buf);
        put(layout, owners, &path, &buf, Owner::Root, 0o644)?;
    }
    man_pages(layout, owners, from)
}

/// marblectl's pages from this process's clap command, marbled's from the new binary
/// (`marbled generate-man DIR`), both generated into a staging directory first.
fn man_pages(layout: &Layout, owners: &Owners, from: &Path) -> Result<(), InstallError> {
    let man = layout.host(&layout.man_dir());
    let staging = man.join(format!(".marble-man-{}", std::process::id()));
    std::fs::create_dir_all(&staging).map_err(io("create directory", &staging))?;
    let result = (|| {
        clap_mangen::generate_to(crate::command(), &staging)
            .map_err(io("write man pages in", &staging))?;
        run(Command::new(from.join("marbled"))
            .arg("generate-man")
            .arg(&staging))?;
        let pages = std::fs::read_dir(&staging).map_err(io("read", &staging))?;
        for page in pages {
            let page = page.map_err(io("read", &staging))?.path();
            let bytes = std::fs::read(&page).map_err(io("read", &page))?;
            let name = page.file_name().unwrap_or_default();
            put(
                layout,
                owners,
                &layout.man_dir().join(name),
                &bytes,
                Owner::Root,
                0o644,
            )?;
        }
        Ok(())
    })();
    let _ = std::fs::remove_dir_all(&staging);
    result
}

/// A token file: created empty when missing; present ones keep their content and get 0600
/// and the service user as owner (a token readable by others is what check-config flags).
fn secret_file(layout: &Layout, owners: &Owners, path: &Path) -> Result<(), InstallError> {
    let target = layout.host(path);
    if !target.exists() {
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&target)
            .map_err(io("create", &target))?;
    }
    set_owner_mode(&target, owners, Owner::Service, 0o600)
}

/// The daemon's default config (`marbled print-default-config` of the binary being
/// installed) with this layout's paths, the socket group and the daemon's own log rotation.
fn default_config(layout: &Layout, from: &Path) -> Result<String, InstallError> {
    let text = run(Command::new(from.join("marbled")).arg("print-default-config"))?;
    let prefix = layout.prefix.display().to_string();
    let prefix = prefix.trim_end_matches('/');
    let text = text
        .replace("\"/usr/local/var/", &format!("\"{prefix}/var/"))
        .replace("\"/usr/local/etc/", &format!("\"{prefix}/etc/"))
        .replace(
            "socket_group = \"\"",
            &format!("socket_group = {:?}", layout.socket_group),
        )
        .replacen(
            "[daemon]\n",
            &format!(
                "[daemon]\nlog_file = {:?}\n",
                layout.daemon_log().display().to_string()
            ),
            1,
        );
    Ok(text)
}

fn run(cmd: &mut Command) -> Result<String, InstallError> {
    let command = format!("{cmd:?}");
    let out = cmd.output().map_err(|e| InstallError::Command {
        command: command.clone(),
        detail: e.to_string(),
    })?;
    if !out.status.success() {
        return Err(InstallError::Command {
            command,
            detail: format!(
                "{}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `uninstall`: what install wrote as programs. Returns the paths removed.
pub fn remove_programs(layout: &Layout) -> Result<Vec<PathBuf>, InstallError> {
    let mut paths = vec![
        layout.bin().join("marbled"),
        layout.bin().join("marblectl"),
        layout.plist(),
        layout.newsyslog(),
    ];
    paths.extend(layout.completions().into_iter().map(|(_, p)| p));
    let man = layout.host(&layout.man_dir());
    if let Ok(entries) = std::fs::read_dir(&man) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            // marbled.1, marbled-run.1, marblectl.1, marblectl-vm-start.1…
            let ours = ["marbled", "marblectl"]
                .iter()
                .any(|p| name == format!("{p}.1") || name.starts_with(&format!("{p}-")));
            if ours && name.ends_with(".1") {
                paths.push(layout.man_dir().join(name));
            }
        }
    }
    let mut removed = Vec::new();
    for path in paths {
        let target = layout.host(&path);
        match std::fs::remove_file(&target) {
            Ok(()) => removed.push(path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io("remove", &target)(e)),
        }
    }
    Ok(removed)
}

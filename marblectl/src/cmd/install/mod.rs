//! `marblectl install`, `upgrade` and `uninstall`: MARBLE on a host in one command each.
//!
//! Why here and not a shell script: it ships inside the one binary the operator already
//! copies, it is tested like the rest of marblectl (into a `--destdir` root on Linux), and
//! it generates the plist, completions and man pages from the same code the binaries run.
//!
//! What goes where is [`Layout`]; the plist and the newsyslog conf are [`plist`]; starting
//! and restarting the daemon goes through a [`service::ServiceManager`] (launchd on a host,
//! a pid-file stand-in in tests). Files are written atomically (temp file + rename), so a
//! running binary is replaced, never rewritten in place. Config, secrets, state, logs, VMs
//! and images are never overwritten or removed.

pub mod files;
pub mod plist;
pub mod preflight;
pub mod service;

use std::path::{Path, PathBuf};

use crate::cli::{InstallArgs, UninstallArgs, UpgradeArgs};
use crate::client::{LAUNCHD_LABEL, LAUNCHD_PLIST};
use crate::cmd::Context;
use crate::exit::Exit;

pub use files::InstallError;

/// Token files created empty (0600, owned by the service user) when missing: the config
/// points `token_file` at them (docs/OPERATIONS.md); their content is never touched.
pub const SECRET_FILES: [&str; 2] = ["github-token", "jenkins-token"];

/// Where every installed file goes, as paths on the target host (`destdir` is prepended
/// only when writing: [`Layout::host`]).
#[derive(Debug, Clone)]
pub struct Layout {
    /// Root the files are written under (`--destdir`); `/` on a host.
    pub destdir: PathBuf,
    /// Absolute prefix on the target host, e.g. `/usr/local`.
    pub prefix: PathBuf,
    /// The service user: owns the VMs, runs the daemon, owns the secrets and state.
    pub user: String,
    /// Its primary group.
    pub group: String,
    /// Group of the control socket (read-only access for its members).
    pub socket_group: String,
    /// The service user's home (the daemon's `HOME`).
    pub home: PathBuf,
}

impl Layout {
    /// `path` (absolute, on the target host) under the destdir.
    pub fn host(&self, path: &Path) -> PathBuf {
        self.destdir.join(path.strip_prefix("/").unwrap_or(path))
    }
    /// Binaries.
    pub fn bin(&self) -> PathBuf {
        self.prefix.join("bin")
    }
    /// Config directory (config file and token files).
    pub fn config_dir(&self) -> PathBuf {
        self.prefix.join("etc/marble")
    }
    /// The daemon's config file.
    pub fn config_file(&self) -> PathBuf {
        self.config_dir().join("marbled.toml")
    }
    /// State file and socket directory.
    pub fn state_dir(&self) -> PathBuf {
        self.prefix.join("var/marble")
    }
    /// Log directory.
    pub fn log_dir(&self) -> PathBuf {
        self.prefix.join("var/log/marble")
    }
    /// The daemon's own log (`daemon.log_file`, rotated daily by the daemon).
    pub fn daemon_log(&self) -> PathBuf {
        self.log_dir().join("marbled.log")
    }
    /// launchd's `StandardErrorPath`.
    pub fn stderr_log(&self) -> PathBuf {
        self.log_dir().join("marbled.stderr")
    }
    /// launchd's `StandardOutPath`.
    pub fn stdout_log(&self) -> PathBuf {
        self.log_dir().join("marbled.out")
    }
    /// The LaunchDaemon plist (launchd only reads this directory).
    pub fn plist(&self) -> PathBuf {
        PathBuf::from(LAUNCHD_PLIST)
    }
    /// The newsyslog conf (newsyslog reads this directory).
    pub fn newsyslog(&self) -> PathBuf {
        PathBuf::from(format!("/etc/newsyslog.d/{LAUNCHD_LABEL}.conf"))
    }
    /// Man pages, section 1.
    pub fn man_dir(&self) -> PathBuf {
        self.prefix.join("share/man/man1")
    }
    /// Completion files: (shell, path).
    pub fn completions(&self) -> [(clap_complete::Shell, PathBuf); 3] {
        use clap_complete::Shell;
        let share = self.prefix.join("share");
        [
            (
                Shell::Bash,
                share.join("bash-completion/completions/marblectl"),
            ),
            (Shell::Zsh, share.join("zsh/site-functions/_marblectl")),
            (
                Shell::Fish,
                share.join("fish/vendor_completions.d/marblectl.fish"),
            ),
        ]
    }
}

/// `marblectl install`.
pub async fn install(ctx: &Context, args: InstallArgs) -> Exit {
    let layout = match files::layout_for_install(&args) {
        Ok(layout) => layout,
        Err(err) => return fail(&err),
    };
    if args.destdir.is_some() {
        eprintln!(
            "marblectl: --destdir {}: host check skipped (files are staged, not installed on this host)",
            layout.destdir.display()
        );
    } else if let Some(exit) = preflight::refuse(ctx, &layout).await {
        return exit;
    }
    let from = match files::source_dir(args.from.as_deref()) {
        Ok(from) => from,
        Err(err) => return fail(&err),
    };
    if let Err(err) = files::install_all(&layout, &from) {
        return fail(&err);
    }
    let service = service::for_args(&layout, args.service_pid_file.as_deref());
    match service.start() {
        Ok(note) => eprintln!("marblectl: {note}"),
        Err(err) => return fail(&err),
    }
    eprintln!(
        "marblectl: installed into {}; config {} (kept if it existed), tokens {}/{{{}}} (0600, owner {})",
        layout
            .destdir
            .join(layout.prefix.strip_prefix("/").unwrap_or(&layout.prefix))
            .display(),
        layout.config_file().display(),
        layout.config_dir().display(),
        SECRET_FILES.join(","),
        layout.user
    );
    Exit::Ok
}

/// `marblectl upgrade`: new binaries, plist, completions and man pages, then a restart.
pub async fn upgrade(ctx: &Context, args: UpgradeArgs) -> Exit {
    let layout = match files::installed_layout(args.destdir.as_deref(), &args.prefix) {
        Ok(layout) => layout,
        Err(err) => return fail(&err),
    };
    let from = match files::source_dir(args.from.as_deref()) {
        Ok(from) => from,
        Err(err) => return fail(&err),
    };
    if let Err(err) = files::install_programs(&layout, &from) {
        return fail(&err);
    }
    let service = service::for_args(&layout, args.service_pid_file.as_deref());
    match service.restart() {
        Ok(note) => eprintln!("marblectl: {note}"),
        Err(err) => return fail(&err),
    }
    if !service.manages_daemon() {
        return Exit::Ok;
    }
    // The new daemon adopts the running VMs and the state file's locks; wait until it
    // answers so the operator (or a deploy script) knows the upgrade is done.
    match wait_for_daemon(ctx).await {
        Ok(version) => {
            eprintln!(
                "marblectl: marbled {version} answers on {}",
                ctx.socket.display()
            );
            Exit::Ok
        }
        Err(err) => {
            eprintln!(
                "marblectl: the new marbled does not answer: {}; see {}",
                crate::render_error(&err),
                layout.host(&layout.stderr_log()).display()
            );
            Exit::Unavailable
        }
    }
}

/// `marblectl uninstall`: stop the daemon, remove programs, plist, completions, man pages.
pub fn uninstall(args: &UninstallArgs) -> Exit {
    let layout = match files::installed_layout(args.destdir.as_deref(), &args.prefix) {
        Ok(layout) => layout,
        Err(err) => return fail(&err),
    };
    let service = service::for_args(&layout, args.service_pid_file.as_deref());
    match service.stop() {
        Ok(note) => eprintln!("marblectl: {note}"),
        Err(err) => return fail(&err),
    }
    match files::remove_programs(&layout) {
        Ok(removed) => {
            for path in removed {
                eprintln!("removed {}", path.display());
            }
        }
        Err(err) => return fail(&err),
    }
    eprintln!(
        "marblectl: kept {} (config and token files: remove by hand), {} (state: locks, leases), {} (logs); VMs and images are untouched",
        layout.config_dir().display(),
        layout.state_dir().display(),
        layout.log_dir().display()
    );
    Exit::Ok
}

async fn wait_for_daemon(ctx: &Context) -> Result<String, crate::client::ClientError> {
    const WAIT: std::time::Duration = std::time::Duration::from_secs(60);
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        match ctx
            .call_with_progress(marble_proto::Request::Status, false)
            .await
        {
            Ok(marble_proto::Response::Status(report)) => return Ok(report.daemon_version),
            Ok(_) => return Ok(String::from("(unknown version)")),
            Err(err) if std::time::Instant::now() >= deadline => return Err(err),
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(200)).await,
        }
    }
}

fn fail(err: &InstallError) -> Exit {
    eprintln!("marblectl: {}", crate::cmd::install::files::chain(err));
    err.exit()
}

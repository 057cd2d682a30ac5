//! Harnesses for end-to-end and process-level tests: a daemon running the production
//! `marbled::run` in-process ([`TestDaemon`]), the real daemon binary as a child process
//! ([`DaemonProcess`]), paths of this package's binaries, and [`wait_until`].
//!
//! Every harness owns a short temp dir (prefix `mb` under /tmp) so socket paths stay far below
//! macOS's 104-byte `sun_path` limit, and binds its socket before anything connects, so no
//! test ever sleeps and retries a connect.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use marbled::Config;
use tokio_util::sync::CancellationToken;

/// Poll `cond` every 20 ms until it holds or `timeout` passes; returns whether it held.
pub async fn wait_until<F: FnMut() -> bool>(timeout: Duration, mut cond: F) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// [`wait_until`] for a condition that must await (e.g. a query to the actor).
pub async fn wait_until_async<F, Fut>(timeout: Duration, mut cond: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if cond().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Blocking variant of [`wait_until`] for synchronous tests.
pub fn wait_until_blocking<F: FnMut() -> bool>(timeout: Duration, mut cond: F) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Path of a binary built from this package (`fake-prlctl`, `prlsim`,
/// `marbled-under-test`, `marblectl-under-test`), found next to the running test binary.
pub fn bin_path(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let mut dir = exe
        .parent()
        .expect("test binary has a directory")
        .to_owned();
    // Integration tests live in target/<profile>/deps; binaries in target/<profile>.
    if dir.ends_with("deps") {
        dir.pop();
    }
    dir.join(name)
}

/// A short temp dir for sockets.
pub fn short_tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("mb")
        .tempdir_in("/tmp")
        .expect("create temp dir")
}

/// A daemon config for tests: socket and state in `dir`, prlctl = the simulator on
/// `sim_dir`, manual policy and short timings (tests opt into `cycle`).
pub fn test_config(dir: &Path, sim_dir: &Path) -> Config {
    let mut config = Config::default();
    config.daemon.socket = dir.join("m.sock");
    config.daemon.state_file = dir.join("state.bin");
    config.daemon.shutdown_budget = Duration::from_secs(5);
    config.daemon.host_name = "macphsft-test".into();
    config.prlctl.path = bin_path("fake-prlctl");
    config.prlctl.timeout = Duration::from_secs(10);
    config.prlctl.start_timeout = Duration::from_secs(10);
    config.prlctl.stop_timeout = Duration::from_secs(10);
    config
        .prlctl
        .env
        .insert("MARBLE_PRLSIM_DIR".into(), sim_dir.display().to_string());
    config.probe.timeout = Duration::from_secs(5);
    config.probe.ready_poll = Duration::from_millis(50);
    config.scheduler.policy = "manual".into();
    config.scheduler.ready_timeout = Duration::from_secs(10);
    config.scheduler.graceful_stop_timeout = Duration::from_secs(3);
    config.scheduler.inventory_interval = Duration::from_secs(2);
    // The fleet's Macs are Apple silicon: the tests' jobs ask for `ARM64` whatever machine
    // runs the tests (the daemon's default is the architecture it was built for).
    config.labels.arch = Some("ARM64".into());
    config
}

/// `marbled::run` in this process, on its own socket.
#[derive(Debug)]
pub struct TestDaemon {
    /// Config in use.
    pub config: Config,
    shutdown: CancellationToken,
    task: Option<tokio::task::JoinHandle<Result<(), marbled::DaemonError>>>,
    _guard: marbled::socket::SocketGuard,
}

impl TestDaemon {
    /// Bind the socket, then run the daemon as a task of the current runtime.
    pub fn start(config: Config) -> TestDaemon {
        let (listener, guard) =
            marbled::socket::bind(&config.daemon.socket, &config.daemon.socket_group)
                .expect("bind test socket");
        let shutdown = CancellationToken::new();
        let (_reload_tx, reload_rx) = tokio::sync::mpsc::channel(1);
        let task = tokio::spawn(marbled::run(
            config.clone(),
            listener,
            reload_rx,
            shutdown.clone(),
        ));
        TestDaemon {
            config,
            shutdown,
            task: Some(task),
            _guard: guard,
        }
    }

    /// The socket path.
    pub fn socket(&self) -> &Path {
        &self.config.daemon.socket
    }

    /// A connected client.
    pub async fn client(&self) -> marblectl::client::Client {
        marblectl::client::Client::connect(self.socket())
            .await
            .expect("connect to test daemon")
    }

    /// Graceful shutdown; returns the daemon's result.
    pub async fn stop(mut self) -> Result<(), marbled::DaemonError> {
        self.shutdown.cancel();
        let task = self.task.take().expect("task present until stop");
        tokio::time::timeout(Duration::from_secs(30), task)
            .await
            .expect("daemon stops within 30 s")
            .expect("daemon task did not panic")
    }
}

impl Drop for TestDaemon {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// The real daemon binary (`marbled-under-test`, same entry as `marbled`) as a child.
#[derive(Debug)]
pub struct DaemonProcess {
    /// The child.
    pub child: Child,
    /// Its socket.
    pub socket: PathBuf,
    /// Where its stderr goes.
    pub log: PathBuf,
}

impl DaemonProcess {
    /// Write `config` to `dir/marbled.toml` and start the daemon; waits until the socket
    /// accepts connections (or panics after 20 s with the daemon's log).
    pub fn spawn(dir: &Path, config: &Config) -> DaemonProcess {
        Self::spawn_with_log(dir, config, "debug")
    }

    /// [`DaemonProcess::spawn`] with `MARBLE_LOG` set to `filter` (e.g. `trace` for tests
    /// that prove a secret appears in no log line at any level).
    pub fn spawn_with_log(dir: &Path, config: &Config, filter: &str) -> DaemonProcess {
        Self::spawn_with_env(dir, config, filter, &[])
    }

    /// [`DaemonProcess::spawn_with_log`] with extra environment variables (e.g. `HOME`: the
    /// service user's home, where `migrate check` looks for the seed's files).
    pub fn spawn_with_env(
        dir: &Path,
        config: &Config,
        filter: &str,
        env: &[(&str, &Path)],
    ) -> DaemonProcess {
        let path = dir.join("marbled.toml");
        std::fs::write(&path, toml::to_string(config).expect("serialise config"))
            .expect("write config");
        let log = dir.join(format!("marbled-{}.log", std::process::id()));
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("open log");
        let child = Command::new(bin_path("marbled-under-test"))
            .arg("--config")
            .arg(&path)
            .arg("run")
            .env("MARBLE_LOG", filter)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .expect("spawn marbled-under-test");
        let socket = config.daemon.socket.clone();
        let mut daemon = DaemonProcess { child, socket, log };
        let up = wait_until_blocking(Duration::from_secs(20), || {
            std::os::unix::net::UnixStream::connect(&daemon.socket).is_ok()
                || daemon.child.try_wait().ok().flatten().is_some()
        });
        if !up || daemon.child.try_wait().ok().flatten().is_some() {
            panic!("marbled did not come up:\n{}", daemon.log_text());
        }
        daemon
    }

    /// The daemon's stderr so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Send a signal.
    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.child.id()).expect("pid fits"));
        nix::sys::signal::kill(pid, sig).expect("send signal");
    }

    /// SIGKILL and reap.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then wait up to `timeout` for the exit status (SIGKILL after that).
    pub fn terminate(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        self.signal(nix::sys::signal::Signal::SIGTERM);
        let mut status = None;
        wait_until_blocking(timeout, || {
            status = self.child.try_wait().ok().flatten();
            status.is_some()
        });
        if status.is_none() {
            self.kill9();
        }
        status
    }
}

impl Drop for DaemonProcess {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            self.kill9();
        }
    }
}

/// Run the real CLI (`marblectl-under-test`) against `socket`; returns (exit code, stdout,
/// stderr).
pub fn marblectl(socket: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(bin_path("marblectl-under-test"))
        .env("MARBLE_SOCKET", socket)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run marblectl");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

//! Cases 2, 3 and 4 of issue 15: the socket under descriptor pressure, silent connections
//! and clients, the connection limit, bounded free text and over-size replies.

use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::e2e_support::{Out, Running, SPI1, SimEnv, T, ctl, ctl_command};
use marble_proto::handshake::Hello;
use marble_proto::{Attribution, ClientFrame, FramedConn, Request};
use marble_tests::harness::{DaemonProcess, bin_path, wait_until_blocking};

/// The descriptor limit the pressure tests run the daemon under.
const FD_LIMIT: u32 = 64;

/// Start the daemon of `env` with its open-file limit set to `limit` (soft and hard), the
/// way launchd's default of 256 bites on macOS; waits until it answers `status`.
fn spawn_limited(env: &SimEnv, limit: u32) -> DaemonProcess {
    let dir = env.dir.path();
    let config_path = dir.join("marbled.toml");
    std::fs::write(&config_path, toml::to_string(&env.config).unwrap()).unwrap();
    let log = dir.join("marbled-limited.log");
    let log_file = std::fs::File::create(&log).unwrap();
    // `exec` keeps the pid: the child's pid is the daemon's.
    let child = Command::new("sh")
        .arg("-c")
        .arg(format!("ulimit -n {limit} && exec \"$0\" \"$@\""))
        .arg(bin_path("marbled-under-test"))
        .arg("--config")
        .arg(&config_path)
        .arg("run")
        .env("MARBLE_LOG", "debug")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log_file)
        .spawn()
        .unwrap();
    let daemon = DaemonProcess {
        child,
        socket: env.config.daemon.socket.clone(),
        log,
    };
    let up = wait_until_blocking(T, || ctl(&daemon.socket, &["status"]).code == 0);
    assert!(up, "marbled did not come up:\n{}", daemon.log_text());
    daemon
}

/// utime + stime of `pid`, in seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // The command name may hold spaces; fields after the closing parenthesis are fixed.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Fields 14 and 15 of proc(5) are 12 and 13 after the pid and the name.
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    ticks as f64 / clock_ticks()
}

fn clock_ticks() -> f64 {
    let out = Command::new("getconf").arg("CLK_TCK").output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

/// Open `n` connections that never say anything. Non-blocking connects: a daemon that leaves
/// clients in a full backlog fails the test (EAGAIN) instead of hanging it.
fn silent_clients(socket: &Path, n: usize) -> Vec<UnixStream> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut out = Vec::with_capacity(n);
        for i in 0..n {
            let stream = tokio::net::UnixStream::connect(socket)
                .await
                .unwrap_or_else(|e| panic!("silent client {i} of {n}: {e}"));
            out.push(stream.into_std().unwrap());
        }
        out
    })
}

/// `marblectl ARGS`, timed, failing the test after `limit`.
fn ctl_within(socket: &Path, args: &[&str], limit: Duration) -> Out {
    Running::spawn(ctl_command(socket, args)).wait(limit)
}

/// Daemon log lines about failed accepts.
fn accept_error_lines(log: &str) -> usize {
    log.lines()
        .filter(|l| l.contains("accept") && (l.contains("fail") || l.contains("error")))
        .count()
}

/// What the socket-pressure bench prints: status latency and daemon CPU under 500 silent
/// clients at the descriptor limit.
struct Pressure {
    /// `status` answered (0) with the silent clients still connected.
    status: Out,
    /// Daemon CPU over the measured window, fraction of one core.
    cpu: f64,
    /// Accept-error log lines.
    lines: usize,
    /// Seconds from the first silent client to the end of the window.
    secs: f64,
    /// The daemon's log.
    log: String,
}

/// 500 silent clients on a daemon at [`FD_LIMIT`], `status` asked while they stay
/// connected, then the daemon's CPU over a fixed 10 s window (measured, not a wait).
fn under_pressure() -> Pressure {
    let env = SimEnv::new();
    let daemon = spawn_limited(&env, FD_LIMIT);
    let pid = daemon.child.id();
    let started = Instant::now();
    let silent = silent_clients(&daemon.socket, 500);
    // Hang guard only: how fast it answers is the bench's figure.
    let status = ctl_within(&daemon.socket, &["status"], Duration::from_secs(30));
    let window = Duration::from_secs(10);
    let cpu_before = cpu_seconds(pid);
    let wall = Instant::now();
    std::thread::sleep(window);
    let cpu = (cpu_seconds(pid) - cpu_before) / wall.elapsed().as_secs_f64();
    // Still connected through the window: the flood lasted as long as the measurement.
    drop(silent);
    let log = daemon.log_text();
    Pressure {
        status,
        cpu,
        lines: accept_error_lines(&log),
        secs: started.elapsed().as_secs_f64(),
        log,
    }
}

#[test]
fn case_02_accept_errors_back_off() {
    let p = under_pressure();
    eprintln!(
        "status with 500 silent clients: {}; daemon CPU {:.2} % of a core; {} accept-error log lines in {:.1} s",
        p.status,
        p.cpu * 100.0,
        p.lines,
        p.secs
    );
    // Answered while the 500 silent clients held the daemon at its descriptor limit.
    assert_eq!(
        p.status.code, 0,
        "admin status under pressure: {}",
        p.status
    );
    // A spin guard, not a speed figure: a loop retrying failed accepts at once uses a whole
    // core; the daemon's idle figure (well under 1 %) is `bench_socket_timings`'.
    assert!(p.cpu <= 0.5, "daemon used {:.1} % of a core", p.cpu * 100.0);
    let allowed = 1 + (p.secs / 10.0).floor() as usize;
    assert!(
        p.lines <= allowed,
        "{} accept-error lines in {:.1} s (at most {allowed}):\n{}",
        p.lines,
        p.secs,
        p.log
            .lines()
            .filter(|l| l.contains("accept"))
            .take(5)
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// `status` with 1024 silent clients connected (hang guard 20 s).
fn status_past_silent_clients() -> Out {
    let env = SimEnv::new();
    let daemon = env.spawn();
    let _silent = silent_clients(&daemon.socket, 1024);
    ctl_within(&daemon.socket, &["status"], Duration::from_secs(20))
}

#[test]
fn case_03_silent_clients_do_not_block_status() {
    let status = status_past_silent_clients();
    eprintln!("status with 1024 silent clients: {status}");
    // Answered while 1024 clients that never speak stay connected (the silent ones hold
    // their connections until the end of the helper).
    assert_eq!(status.code, 0, "{status}");
}

/// Asks a SIGSTOPped daemon for `status` with `--timeout 1s` and, at the same moment, with
/// `--timeout 8s`; returns both answers (the second is waited for once the first is in).
/// The daemon is continued only after both.
fn stalled_status() -> (Out, Out, String, bool) {
    let env = SimEnv::new();
    let daemon = env.spawn();
    daemon.signal(nix::sys::signal::Signal::SIGSTOP);
    let short = Running::spawn(ctl_command(&daemon.socket, &["--timeout", "1s", "status"]));
    let mut long = Running::spawn(ctl_command(&daemon.socket, &["--timeout", "8s", "status"]));
    let short = short.wait(Duration::from_secs(30));
    let long_still_waiting = !long.finished();
    let long = long.wait(Duration::from_secs(30));
    daemon.signal(nix::sys::signal::Signal::SIGCONT);
    (
        short,
        long,
        daemon.socket.display().to_string(),
        long_still_waiting,
    )
}

#[test]
fn case_03_stalled_daemon_times_out() {
    let (out, long, socket, long_still_waiting) = stalled_status();
    eprintln!("status of a stopped daemon: --timeout 1s {out}; --timeout 8s {long}");
    assert!(matches!(out.code, 69 | 75), "{out}");
    // The client gave up by its own timeout while the daemon was still stopped (it is
    // continued only afterwards), and by the one it was given: the same question asked at
    // the same moment with a longer timeout was still waiting.
    assert!(
        long_still_waiting,
        "--timeout 8s gave up no later than --timeout 1s: {long}"
    );
    assert!(matches!(long.code, 69 | 75), "{long}");
    assert!(
        out.stderr.contains(&socket),
        "the message names the socket: {out}"
    );
}

/// Socket figures (issue 15, cases 2 and 3): `status` latency and daemon CPU under 500
/// silent clients at the descriptor limit, `status` latency past 1024 silent clients, and
/// how long `--timeout 1s` takes to give up on a stopped daemon. Prints; asserts nothing
/// about speed (docs/benchmarks.md, "Socket under pressure").
#[test]
#[ignore = "benchmark: prints figures (docs/benchmarks.md)"]
fn bench_socket_timings() {
    let p = under_pressure();
    let silent = status_past_silent_clients();
    let (stalled, _, _, _) = stalled_status();
    println!(
        "socket bench: status with 500 silent clients at {FD_LIMIT} fds: {:?} (exit {}); \
         daemon CPU over 10 s: {:.2} % of a core; accept-error lines: {} in {:.1} s",
        p.status.elapsed,
        p.status.code,
        p.cpu * 100.0,
        p.lines,
        p.secs
    );
    println!(
        "socket bench: status with 1024 silent clients: {:?} (exit {})",
        silent.elapsed, silent.code
    );
    println!(
        "socket bench: --timeout 1s on a stopped daemon gave up after {:?} (exit {})",
        stalled.elapsed, stalled.code
    );
}

#[test]
fn case_03_long_request_slot_outlives_timeout() {
    let env = SimEnv::new();
    let boot = Duration::from_secs(4);
    env.host.set_boot_delay(SPI1, boot).unwrap();
    let daemon = env.spawn();
    let out = ctl_within(
        &daemon.socket,
        &["--timeout", "1s", "request-slot", SPI1, "--wait", "60s"],
        T,
    );
    eprintln!("request-slot with a {boot:?} boot: {out}");
    assert_eq!(out.code, 0, "{out}\n{}", daemon.log_text());
    assert!(out.elapsed >= boot, "the boot was not slow: {out}");
    assert!(out.stdout.is_empty(), "request-slot never writes stdout");
}

#[test]
fn case_03_watch_stream_outlives_timeout() {
    let env = SimEnv::new();
    let daemon = env.spawn();
    let mut follow = Running::spawn(ctl_command(
        &daemon.socket,
        &["--timeout", "1s", "events", "--follow"],
    ));
    // A window longer than the timeout, measured.
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        !follow.finished(),
        "events --follow ended on a quiet daemon: {}",
        follow.wait(T)
    );
}

/// Open watch streams until the daemon refuses one at its connection limit.
fn fill_with_watchers(socket: &Path) -> (Vec<FramedConn<tokio::net::UnixStream>>, String) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut held = Vec::new();
        for _ in 0..200 {
            let stream = tokio::net::UnixStream::connect(socket).await.unwrap();
            let mut conn = FramedConn::new(stream);
            let hello = Hello::current("faults");
            let answer = conn.client_handshake(&hello);
            match tokio::time::timeout(Duration::from_secs(3), answer).await {
                Err(_) => panic!("no handshake answer with {} watch streams open", held.len()),
                Ok(Ok(_)) => {}
                Ok(Err(marble_proto::ConnError::Rejected { reason, .. })) => {
                    return (held, reason);
                }
                Ok(Err(err)) => panic!("handshake after {} watchers: {err}", held.len()),
            }
            conn.send(&ClientFrame {
                id: 1,
                body: Request::WatchEvents,
            })
            .await
            .unwrap();
            held.push(conn);
        }
        panic!("200 watch streams and no refusal");
    })
}

#[test]
fn case_03_connection_limit_is_a_clear_refusal() {
    let env = SimEnv::new();
    let daemon = spawn_limited(&env, FD_LIMIT);
    let (held, reason) = fill_with_watchers(&daemon.socket);
    eprintln!("refused after {} watch streams: {reason}", held.len());
    assert!(reason.contains("connection limit"), "{reason}");
    let out = ctl_within(&daemon.socket, &["status"], Duration::from_secs(10));
    assert_eq!(out.code, 69, "{out}");
    assert!(out.stderr.contains("connection limit"), "{out}");
    drop(held);
    let back = wait_until_blocking(T, || ctl(&daemon.socket, &["status"]).code == 0);
    assert!(back, "status after the watchers left");
}

#[test]
fn case_04_free_text_fields_are_bounded() {
    let env = SimEnv::new();
    let daemon = env.spawn();
    let long = "x".repeat(2000);
    for args in [
        vec!["lock", SPI1, "--reason", long.as_str()],
        vec!["pause", "--reason", long.as_str()],
        vec!["drain", "--reason", long.as_str()],
    ] {
        let out = ctl(&daemon.socket, &args);
        assert_eq!(out.code, 64, "{} with a 2000-byte reason: {out}", args[0]);
        assert!(
            out.stderr.contains("reason") && out.stderr.contains("1024"),
            "the error names the field and the limit: {out}"
        );
    }
    let status = ctl(&daemon.socket, &["status"]);
    assert_eq!(status.code, 0, "{status}");
    assert!(!status.stdout.contains(&long[..1025]), "nothing was stored");
}

#[test]
fn case_04_oversize_reply_is_an_explicit_error() {
    let env = SimEnv::new();
    // Four 300 kB lock reasons, as an older daemon could have stored them: `status` carries
    // them well over the 1 MiB frame.
    let mut state = marbled::sched::Persisted::default();
    for vm in crate::e2e_support::ALL_VMS {
        state.locks.insert(
            vm.to_owned(),
            Attribution {
                by: "ops".into(),
                reason: "r".repeat(300_000),
                since_ms: 1,
            },
        );
    }
    marbled::store::Store::new(&env.config.daemon.state_file)
        .save(&state)
        .unwrap();
    // Not `env.spawn()`: its wait on `vm list` would hit the same over-size reply.
    let daemon = DaemonProcess::spawn(env.dir.path(), &env.config);
    // The locks show (and the reply grows) once the first inventory has the VMs.
    let mut out = ctl(&daemon.socket, &["status"]);
    wait_until_blocking(T, || {
        out = ctl(&daemon.socket, &["status"]);
        out.code != 0
    });
    eprintln!(
        "status with an over-size reply: exit {}: {}",
        out.code, out.stderr
    );
    assert_ne!(out.code, 0, "{out}");
    assert!(
        out.stderr.contains("frame limit") && out.stderr.contains("status"),
        "the client says why: {out}"
    );
    // The connection survives the refusal: a small request still works.
    let unlock = ctl(&daemon.socket, &["unlock", "--all"]);
    assert_eq!(unlock.code, 0, "{unlock}");
    let again = ctl(&daemon.socket, &["status"]);
    assert_eq!(again.code, 0, "{again}");
}

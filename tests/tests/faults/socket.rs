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

#[test]
fn case_02_accept_errors_back_off() {
    let env = SimEnv::new();
    let daemon = spawn_limited(&env, FD_LIMIT);
    let pid = daemon.child.id();
    let started = Instant::now();

    let _silent = silent_clients(&daemon.socket, 500);
    let mut status = Running::spawn(ctl_command(&daemon.socket, &["status"]));
    let asked = Instant::now();
    let answered = wait_until_blocking(Duration::from_secs(5), || status.finished());
    let latency = asked.elapsed();
    eprintln!("status with 500 silent clients: answered {answered} after {latency:?}");

    // A fixed window, measured (not a wait for a condition).
    let window = Duration::from_secs(10);
    let cpu_before = cpu_seconds(pid);
    let wall = Instant::now();
    std::thread::sleep(window);
    let cpu = (cpu_seconds(pid) - cpu_before) / wall.elapsed().as_secs_f64();
    let log = daemon.log_text();
    let lines = accept_error_lines(&log);
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "daemon CPU over {window:?}: {:.2} % of a core; {lines} accept-error log lines in {secs:.1} s",
        cpu * 100.0
    );

    assert!(answered, "no answer to status within 5 s");
    let status = status.wait(T);
    assert_eq!(status.code, 0, "admin status under pressure: {status}");
    assert!(latency < Duration::from_secs(1), "status took {latency:?}");
    assert!(cpu <= 0.05, "daemon used {:.1} % of a core", cpu * 100.0);
    let allowed = 1 + (secs / 10.0).floor() as usize;
    assert!(
        lines <= allowed,
        "{lines} accept-error lines in {secs:.1} s (at most {allowed}):\n{}",
        log.lines()
            .filter(|l| l.contains("accept"))
            .take(5)
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[test]
fn case_03_silent_clients_do_not_block_status() {
    let env = SimEnv::new();
    let daemon = env.spawn();
    let _silent = silent_clients(&daemon.socket, 1024);
    let status = ctl_within(&daemon.socket, &["status"], Duration::from_secs(20));
    eprintln!(
        "status with 1024 silent clients: exit {} in {:?}",
        status.code, status.elapsed
    );
    assert_eq!(status.code, 0, "{status}");
    assert!(
        status.elapsed < Duration::from_secs(1),
        "status took {:?}",
        status.elapsed
    );
}

#[test]
fn case_03_stalled_daemon_times_out() {
    let env = SimEnv::new();
    let daemon = env.spawn();
    daemon.signal(nix::sys::signal::Signal::SIGSTOP);
    let out = ctl_within(
        &daemon.socket,
        &["--timeout", "1s", "status"],
        Duration::from_secs(10),
    );
    daemon.signal(nix::sys::signal::Signal::SIGCONT);
    eprintln!("status of a stopped daemon: {out}");
    assert!(matches!(out.code, 69 | 75), "{out}");
    assert!(
        out.elapsed < Duration::from_millis(2500),
        "took {:?}",
        out.elapsed
    );
    assert!(
        out.stderr.contains(&daemon.socket.display().to_string()),
        "the message names the socket: {out}"
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

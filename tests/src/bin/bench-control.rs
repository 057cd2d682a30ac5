//! Control-plane benchmark (issue 3 item 10): `request-slot` decision latency under 200
//! concurrent clients against the real daemon binary on a simulated host, and the idle
//! daemon's CPU time and RSS over a minute. Run through `scripts/bench-control.sh`.
//!
//! Decision time, not boot time: the host's only running VM runs a job (a `Runner.Worker`
//! process in the simulated guest), so every request for another VM is decided at once
//! (refused, 75) from the last probe; a second round asks for the running VM itself
//! (granted at once, `already_running`). Latency is measured per request from sending the
//! request on an already connected client to its reply; connect + handshake is reported
//! separately.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use marble_proto::{BusyState, Request, Response};
use marble_tests::harness::{DaemonProcess, short_tempdir, test_config, wait_until_blocking};
use marble_tests::prlsim::SimHost;
use marblectl::client::Client;

const CLIENTS: usize = 200;
const ROUNDS: usize = 10;

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

fn proc_times(pid: u32) -> (f64, f64) {
    // /proc/<pid>/stat fields 14-17: utime stime cutime cstime, in clock ticks.
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<f64> = after
        .split_whitespace()
        .map(|f| f.parse().unwrap_or(0.0))
        .collect();
    let tick = 100.0; // USER_HZ on Linux
    let get = |i: usize| fields.get(i).copied().unwrap_or(0.0) / tick;
    // After ')' the first field is state (index 0) → utime is index 11.
    (get(11) + get(12), get(13) + get(14))
}

fn rss_kib(pid: u32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

async fn burst(
    socket: &std::path::Path,
    vm_for: impl Fn(usize) -> String,
) -> (Vec<f64>, Vec<f64>, usize) {
    let barrier = Arc::new(tokio::sync::Barrier::new(CLIENTS));
    let mut tasks = Vec::new();
    for i in 0..CLIENTS {
        let socket = socket.to_owned();
        let vm = vm_for(i);
        let barrier = barrier.clone();
        tasks.push(tokio::spawn(async move {
            let t0 = Instant::now();
            let mut client = Client::connect(&socket).await.expect("connect");
            let connect_ms = t0.elapsed().as_secs_f64() * 1000.0;
            barrier.wait().await;
            let t1 = Instant::now();
            let result = client
                .call(Request::RequestSlot { vm, wait_ms: 0 }, |_| {})
                .await;
            let decide_ms = t1.elapsed().as_secs_f64() * 1000.0;
            let granted = matches!(result, Ok(Response::SlotGranted(_)));
            (connect_ms, decide_ms, granted)
        }));
    }
    let mut connect = Vec::new();
    let mut decide = Vec::new();
    let mut granted = 0;
    for t in tasks {
        let (c, d, g) = t.await.expect("client task");
        connect.push(c);
        decide.push(d);
        granted += usize::from(g);
    }
    (connect, decide, granted)
}

fn summary(label: &str, mut v: Vec<f64>) -> serde_json::Value {
    v.sort_by(f64::total_cmp);
    let (p50, p99, max) = (
        percentile(&v, 50.0),
        percentile(&v, 99.0),
        v.last().copied().unwrap_or(f64::NAN),
    );
    println!(
        "{label:<44} n={:<5} p50={p50:>7.2} ms  p99={p99:>7.2} ms  max={max:>7.2} ms",
        v.len()
    );
    serde_json::json!({"what": label, "n": v.len(), "p50_ms": p50, "p99_ms": p99, "max_ms": max})
}

fn main() {
    let idle_secs: u64 = std::env::var("BENCH_IDLE_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60);
    let dir = short_tempdir();
    let sim = SimHost::create(dir.path().join("sim")).expect("sim host");
    let root = "bench-ROOT-VM-macOS-14";
    sim.add_running_vm(root).expect("root vm");
    sim.add_process(
        root,
        "/Users/sftnight/actions-runner/bin/Runner.Listener run",
    )
    .expect("listener");
    sim.add_process(
        root,
        "/Users/sftnight/actions-runner/bin/Runner.Worker spawnclient 112 115",
    )
    .expect("worker");
    let spi: Vec<String> = (0..CLIENTS)
        .map(|i| format!("bench-SPI-VM-{i:03}"))
        .collect();
    for name in &spi {
        sim.add_vm(name).expect("spi vm");
    }
    let mut config = test_config(dir.path(), sim.dir());
    // Production timings: nothing may poll faster than these while idle.
    config.scheduler.inventory_interval = Duration::from_secs(30);
    config.scheduler.busy_recheck = Duration::from_secs(60);
    config.daemon.admin_users = vec![
        "root".into(),
        nix::unistd::User::from_uid(nix::unistd::getuid())
            .ok()
            .flatten()
            .map_or("root".into(), |u| u.name),
    ];
    let mut daemon = DaemonProcess::spawn(dir.path(), &config);
    let pid = daemon.child.id();
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let socket = config.daemon.socket.clone();
    // Wait until the daemon has probed the running VM and knows it is busy.
    let known_busy = wait_until_blocking(Duration::from_secs(60), || {
        rt.block_on(async {
            let Ok(mut c) = Client::connect(&socket).await else {
                return false;
            };
            matches!(
                c.call(Request::ShowVm { vm: root.into() }, |_| {}).await,
                Ok(Response::Vm(info)) if matches!(info.busy, BusyState::Busy { .. })
            )
        })
    });
    assert!(
        known_busy,
        "the daemon never saw the ROOT VM busy:\n{}",
        daemon.log_text()
    );

    println!(
        "request-slot decision latency, {CLIENTS} concurrent clients x {ROUNDS} rounds (daemon: release build, simulated host)"
    );
    let mut connect_all = Vec::new();
    let mut refused_all = Vec::new();
    let mut granted_all = Vec::new();
    let mut wrong = 0;
    for _ in 0..ROUNDS {
        let (c, d, g) = rt.block_on(burst(&socket, |i| spi[i].clone()));
        wrong += g;
        connect_all.extend(c);
        refused_all.extend(d);
        let (c, d, g) = rt.block_on(burst(&socket, |_| root.to_owned()));
        wrong += CLIENTS - g;
        connect_all.extend(c);
        granted_all.extend(d);
    }
    assert_eq!(
        wrong, 0,
        "unexpected answers (grants for busy host or refusals for the running VM)"
    );
    let mut report = vec![
        summary("request-slot refused (host busy), decision", refused_all),
        summary("request-slot granted (already running)", granted_all),
        summary("connect + handshake", connect_all),
    ];

    let (self0, child0) = proc_times(pid);
    let t = Instant::now();
    println!("idle for {idle_secs} s (inventory every 30 s, busy probe every 60 s)…");
    std::thread::sleep(Duration::from_secs(idle_secs));
    let wall = t.elapsed().as_secs_f64();
    let (self1, child1) = proc_times(pid);
    let rss = rss_kib(pid, "VmRSS:");
    let hwm = rss_kib(pid, "VmHWM:");
    println!(
        "idle daemon over {wall:.0} s: CPU {:.3} s own ({:.3}% of one core), {:.3} s in reaped prlctl children; RSS {:.1} MiB (peak {:.1} MiB during the bursts)",
        self1 - self0,
        (self1 - self0) / wall * 100.0,
        child1 - child0,
        rss as f64 / 1024.0,
        hwm as f64 / 1024.0
    );
    report.push(serde_json::json!({
        "what": "idle", "seconds": wall, "cpu_self_s": self1 - self0,
        "cpu_children_s": child1 - child0, "rss_mib": rss as f64 / 1024.0, "peak_rss_mib": hwm as f64 / 1024.0
    }));
    println!("{}", serde_json::to_string(&report).expect("json"));
    daemon.terminate(Duration::from_secs(10));
}

//! The fleet of `e2e_fleet_poll` (issue 18): daemons on simulated hosts with `[demand]
//! shared` through one bucket, and waits for each one's role in the election.

use std::time::Duration;

use marble_tests::fake_github::FakeGitHub;
use marble_tests::harness::{DaemonProcess, wait_until_blocking};
use marble_tests::s3::LocalS3;

use super::{SimEnv, T};

/// The fleet's GitHub token (never in a log).
pub const TOKEN: &str = "ghp_e2eFleetPollTokenNeverLogged0123456789a";
/// Every daemon's demand poll interval.
pub const INTERVAL: Duration = Duration::from_secs(5);
/// What the fleet's poller logs.
pub const LEADS: &str = "this host is the fleet's demand poller";
/// What a follower logs.
pub const FOLLOWS: &str = "following the fleet's demand poller";

/// A daemon on a new simulated host `host` with policy `policy`, polling `gh` every
/// [`INTERVAL`] with `[demand] shared` through the bucket at `endpoint`.
pub fn fleet_daemon(
    gh: &FakeGitHub,
    s3: &LocalS3,
    endpoint: &str,
    host: &str,
    policy: &str,
) -> (SimEnv, DaemonProcess) {
    let mut env = SimEnv::new();
    env.use_github(gh.url(), TOKEN);
    env.config.daemon.host_name = host.into();
    env.config.images = s3.config_for(endpoint);
    env.config.fleet = Some(marbled::config::FleetSection::default());
    env.config.demand = Some(marbled::config::DemandSection {
        interval: INTERVAL,
        shared: true,
        ..marbled::config::DemandSection::default()
    });
    env.config.scheduler.policy = policy.into();
    env.config.scheduler.inventory_interval = Duration::from_secs(1);
    let daemon = env.spawn();
    (env, daemon)
}

/// Whether `d`'s log holds `text`.
pub fn log_has(d: &DaemonProcess, text: &str) -> bool {
    d.log_text().contains(text)
}

/// Wait until `d` says it is the fleet's poller.
#[track_caller]
pub fn wait_leads(d: &DaemonProcess) {
    assert!(
        wait_until_blocking(T, || log_has(d, LEADS)),
        "{}",
        d.log_text()
    );
}

/// Wait until `d` says it follows the fleet's poller.
#[track_caller]
pub fn wait_follows(d: &DaemonProcess) {
    assert!(
        wait_until_blocking(T, || log_has(d, FOLLOWS)),
        "{}",
        d.log_text()
    );
}

/// A fleet of `hosts` daemons (`macphsft01`, `macphsft02`, …): the first, with policy
/// `first_policy`, started alone until it leads; the others, with policy `demand`, each
/// waited on until it follows.
#[track_caller]
pub fn start_fleet(
    gh: &FakeGitHub,
    s3: &LocalS3,
    endpoint: &str,
    first_policy: &str,
    hosts: usize,
) -> Vec<(SimEnv, DaemonProcess)> {
    let first = fleet_daemon(gh, s3, endpoint, "macphsft01", first_policy);
    wait_leads(&first.1);
    let mut fleet = vec![first];
    for n in 2..=hosts {
        fleet.push(fleet_daemon(
            gh,
            s3,
            endpoint,
            &format!("macphsft{n:02}"),
            "demand",
        ));
    }
    for (_, d) in &fleet[1..] {
        wait_follows(d);
    }
    fleet
}

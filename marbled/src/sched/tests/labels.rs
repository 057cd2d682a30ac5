//! Labels (issue 17, fault 4): a beta VM serves `mac-beta` jobs, and jobs no VM here nor any
//! registered runner can serve are reported in `status` and boot nothing.

use super::support::*;

const BETA: &str = "h-ROOT-VM-macOS-beta";

fn starts(host: &Host) -> Vec<String> {
    (host.log.iter())
        .filter(|(_, a)| *a == Action::Start)
        .map(|(vm, _)| vm.clone())
        .collect()
}

#[test]
fn a_beta_vm_boots_for_a_mac_beta_job() {
    let mut host = Host::new(
        Policy::Demand,
        &[
            (M14, Team::Root, PowerState::Stopped),
            (BETA, Team::Root, PowerState::Stopped),
        ],
    );
    host.feed(Input::Demand(Box::new(DemandSnapshot {
        root_jobs: vec![job(1, host.now - 5_000, "mac-beta")],
        ..Default::default()
    })));
    host.settle();
    assert_eq!(host.running(), vec![BETA.to_owned()]);
    assert!(host.world.unservable_jobs().is_empty());
}

#[test]
fn jobs_nobody_can_serve_are_reported_and_boot_nothing() {
    let mut host = demand_host();
    let since = host.now - 60_000;
    host.feed(Input::Demand(Box::new(DemandSnapshot {
        root_jobs: vec![
            job(1, since, "mac-beta"),
            job(2, since + 1_000, "MAC-BETA"),
            job(3, host.now, "mac15"),
        ],
        ..Default::default()
    })));
    host.settle();
    assert_eq!(
        starts(&host),
        vec![M15.to_owned()],
        "only the mac15 job boots"
    );
    let unservable = host.world.unservable_jobs();
    assert_eq!(
        unservable,
        vec![UnservableJobs {
            labels: vec!["mac-beta".into(), "macos".into(), "self-hosted".into()],
            jobs: 2,
            since_ms: since,
        }]
    );
    let status = host.world.status(host.now);
    let line = status
        .decisions
        .last()
        .expect("a standing line")
        .text
        .clone();
    assert!(
        line.contains("2 queued job(s) ask for [mac-beta, macos, self-hosted]")
            && line.contains(&format_ms(since)),
        "{line}"
    );
    // A runner registered elsewhere (another host's MARBLE VM) covers them: not reported.
    host.feed(Input::Demand(Box::new(DemandSnapshot {
        root_jobs: vec![job(1, since, "mac-beta")],
        free_runners: vec![FleetRunner {
            name: "marble-h2-ROOT-VM-macOS-beta-0001".into(),
            labels: vec![
                "self-hosted".into(),
                "macOS".into(),
                "ARM64".into(),
                "mac-beta".into(),
            ],
        }],
        ..Default::default()
    })));
    assert!(host.world.unservable_jobs().is_empty());
}

#[test]
fn a_free_host_says_which_queued_jobs_nobody_can_serve() {
    let mut host = demand_host();
    host.feed(Input::Demand(Box::new(DemandSnapshot {
        root_jobs: vec![job(1, host.now - 60_000, "mac-beta")],
        ..Default::default()
    })));
    assert_boots_nothing_and_says(
        &mut host,
        "demand: 0 queued job(s) covered by free runners in the fleet, 1 nobody can serve \
         (see the WARNING line)",
    );
}

/// The host boots nothing and its decisions hold the line `text`.
fn assert_boots_nothing_and_says(host: &mut Host, text: &str) {
    host.settle();
    assert!(starts(host).is_empty());
    let said = host.world.status(host.now).decisions;
    assert!(said.iter().any(|d| d.text == text), "{said:?}");
}

#[test]
fn a_free_host_says_which_queued_jobs_only_another_host_can_run() {
    // Two Intel jobs, one Intel runner free on the Intel host: the second waits for that
    // host. This ARM64 host can do nothing for it, and says so instead of "covered".
    let mut host = demand_host();
    let intel = vec![
        "self-hosted".to_owned(),
        "macOS".into(),
        "X64".into(),
        "mac12".into(),
    ];
    let intel_job = |id| QueuedJob {
        labels: intel.clone(),
        ..job(id, host.now - 60_000, "mac13")
    };
    host.feed(Input::Demand(Box::new(DemandSnapshot {
        root_jobs: vec![intel_job(1), intel_job(2)],
        free_runners: vec![FleetRunner {
            name: "intel-ROOT-VM-macOS-12".into(),
            labels: intel.clone(),
        }],
        ..Default::default()
    })));
    assert_boots_nothing_and_says(
        &mut host,
        "demand: 1 queued job(s) covered by free runners in the fleet, 1 waiting for another \
         host (no VM here can run them)",
    );
}

//! The swap of an idle-host warm runner for a missing predicted platform (`sched/swap.rs`):
//! the runner gives its host up, the freed host boots the predicted platform, and of two
//! hosts that could swap for one target exactly one does.

use super::support::*;
use crate::sched::labels::runner_labels;

const T0: Millis = 1_000_000 + 3 * 3_600_000;

/// Labels of host `h`'s VM for `platform` (`15`, `beta`), as its inventory gives them.
fn platform(h: &str, platform: &str) -> Vec<String> {
    runner_labels(&format!("{h}-ROOT-VM-macOS-{platform}"))
}

fn seen(id: u64, since_ms: Millis, p: &str) -> QueuedJob {
    QueuedJob {
        id,
        since_ms,
        labels: platform("x", p),
    }
}

fn runner(name: &str, p: &str) -> FleetRunner {
    FleetRunner {
        name: name.into(),
        labels: platform("x", p),
    }
}

/// What every host sees: mac15 jobs 40 and 30 min before `T0` (mac15 is predicted), a
/// mac-beta job 3 h before (remembered, not predicted), `running` more, and `free` runners.
fn snapshot(now: Millis, running: &[QueuedJob], free: Vec<FleetRunner>) -> DemandSnapshot {
    let mut running_jobs = vec![
        seen(1, T0 - 40 * 60_000, "15"),
        seen(2, T0 - 30 * 60_000, "15"),
        seen(3, T0 - 3 * 3_600_000 + 60_000, "beta"),
    ];
    running_jobs.extend_from_slice(running);
    DemandSnapshot {
        running_jobs,
        free_runners: free,
        taken_at_ms: now,
        ..Default::default()
    }
}

/// A `demand` host `h` (mac-beta and mac15 VMs, idle-host warmth, the 2 h prediction) whose
/// mac-beta VM is up as the fleet's idle-host runner while another host's runner fills the
/// predicted mac15 target.
fn host_keeping_beta(h: &str) -> Host {
    let beta = format!("{h}-ROOT-VM-macOS-beta");
    let m15 = format!("{h}-ROOT-VM-macOS-15");
    let mut host = demand_host_with(
        |c| {
            c.warm_window_ms = 2 * 3_600_000;
            c.warm_idle_hosts = true;
            c.warm_swap = true;
        },
        &[
            (&beta, Team::Root, PowerState::Stopped),
            (&m15, Team::Root, PowerState::Stopped),
        ],
    );
    host.now = T0 - 15 * 60_000;
    let other = vec![runner("z-other-15", "15")];
    host.feed(Input::Demand(Box::new(snapshot(
        host.now,
        &[],
        other.clone(),
    ))));
    host.advance(11 * 60_000);
    host.feed(Input::Demand(Box::new(snapshot(host.now, &[], other))));
    host.settle();
    assert_eq!(host.running(), vec![beta], "{:?}", host.log);
    host
}

/// Whether `host` stopped its mac-beta runner at or after `log_from`.
fn swapped(host: &Host, log_from: usize) -> bool {
    host.log[log_from..]
        .iter()
        .any(|(vm, a)| vm.ends_with("macOS-beta") && matches!(a, Action::Stop(_)))
}

/// Host `b`, second in rank after `a` swapped (log from `from_b`): while a's runner has left
/// the list and its new mac15 one is not listed yet, `b` waits its turn; after it the list
/// shows a's mac15 runner, nothing is missing, and `b` never swaps.
fn b_waits_its_turn_then_finds_the_target_filled(b: &mut Host, took: &[QueuedJob], from_b: usize) {
    for _ in 0..(55_000 / 5_000) {
        let free = vec![runner("b-ROOT-VM-macOS-beta", "beta")];
        b.feed(Input::Demand(Box::new(snapshot(b.now, took, free))));
        b.advance(5_000);
    }
    assert!(
        !swapped(b, from_b),
        "b swapped before its turn: {:?}",
        b.log
    );
    for _ in 0..12 {
        let free = vec![
            runner("a-ROOT-VM-macOS-15", "15"),
            runner("b-ROOT-VM-macOS-beta", "beta"),
        ];
        b.feed(Input::Demand(Box::new(snapshot(b.now, took, free))));
        b.advance(5_000);
    }
    assert!(
        !swapped(b, from_b),
        "one swap per target, not two: {:?}",
        b.log
    );
    assert_eq!(b.running(), vec!["b-ROOT-VM-macOS-beta".to_owned()]);
}

#[test]
fn an_idle_host_runner_gives_its_host_to_a_missing_predicted_platform() {
    let mut a = host_keeping_beta("a");
    a.now = T0;
    // A push took the mac15 runner: mac15 is missing; a's mac-beta runner is idle.
    let took = [seen(4, T0, "15")];
    let from = a.log.len();
    for _ in 0..4 {
        let free = vec![runner("a-ROOT-VM-macOS-beta", "beta")];
        a.feed(Input::Demand(Box::new(snapshot(a.now, &took, free))));
        a.advance(5_000);
    }
    assert!(swapped(&a, from), "{:?}", a.log);
    assert_eq!(
        a.running(),
        vec!["a-ROOT-VM-macOS-15".to_owned()],
        "{:?}",
        a.log
    );
}

#[test]
fn of_two_hosts_that_could_swap_for_one_target_exactly_one_does() {
    let mut a = host_keeping_beta("a");
    let mut b = host_keeping_beta("b");
    let both = || {
        vec![
            runner("a-ROOT-VM-macOS-beta", "beta"),
            runner("b-ROOT-VM-macOS-beta", "beta"),
        ]
    };
    // Before the push both hosts saw both runners (and the mac15 one, about to be taken).
    let mut before = both();
    before.push(runner("z-other-15", "15"));
    a.feed(Input::Demand(Box::new(snapshot(
        a.now,
        &[],
        before.clone(),
    ))));
    b.feed(Input::Demand(Box::new(snapshot(b.now, &[], before))));
    a.now = T0;
    b.now = T0;
    let took = [seen(4, T0, "15")];
    let (from_a, from_b) = (a.log.len(), b.log.len());
    // `a` (first by runner name) sees the target missing at once and swaps.
    a.feed(Input::Demand(Box::new(snapshot(a.now, &took, both()))));
    a.settle();
    assert!(swapped(&a, from_a), "{:?}", a.log);
    // `b` first looks when a's runner has left the list and its mac15 one is not listed
    // yet: it keeps its rank behind a's (from the previous snapshot) and waits its turn.
    b_waits_its_turn_then_finds_the_target_filled(&mut b, &took, from_b);
}

/// Review of `warm_swap`: the turns counted from the target's anchor alone (the queue time
/// of its platform's latest job). When the swap opened only minutes later — here the push's
/// job took a runner that was still booting — every ranked host was past its turn at once,
/// and both swapped on their first look: a runner thrown away and a host left empty.
#[test]
fn a_swap_that_opens_long_after_its_target_went_missing_still_goes_one_host_at_a_time() {
    let mut a = host_keeping_beta("a");
    let mut b = host_keeping_beta("b");
    let both = || {
        vec![
            runner("a-ROOT-VM-macOS-beta", "beta"),
            runner("b-ROOT-VM-macOS-beta", "beta"),
        ]
    };
    a.now = T0;
    b.now = T0;
    // The job that took the mac15 runner was queued 5 min ago.
    let took = [seen(4, T0 - 5 * 60_000, "15")];
    let (from_a, from_b) = (a.log.len(), b.log.len());
    a.feed(Input::Demand(Box::new(snapshot(a.now, &took, both()))));
    a.settle();
    assert!(swapped(&a, from_a), "{:?}", a.log);
    // `b`, second by runner name, looks on the same snapshot: its turn is a step later.
    b.feed(Input::Demand(Box::new(snapshot(b.now, &took, both()))));
    b.settle();
    assert!(
        !swapped(&b, from_b),
        "b swapped on the same snapshot as a: {:?}",
        b.log
    );
    b_waits_its_turn_then_finds_the_target_filled(&mut b, &took, from_b);
}

/// A runner GitHub does not list free (the feed shows it took a job this host has not
/// attributed yet) is not swapped, even when everything else says it could be.
#[test]
fn a_runner_not_listed_free_is_not_swapped() {
    let mut a = host_keeping_beta("a");
    a.now = T0;
    let took = [seen(4, T0, "15")];
    let from = a.log.len();
    for _ in 0..4 {
        a.feed(Input::Demand(Box::new(snapshot(a.now, &took, vec![]))));
        a.advance(5_000);
    }
    assert!(!swapped(&a, from), "{:?}", a.log);
}

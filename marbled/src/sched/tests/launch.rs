//! A free host launching its own Jenkins node for a build that accepts any node
//! (`launch_any_node_after`, `sched/launch.rs`): when, in which host's turn, and when not.

use super::support::*;

const ANY: &str = "mac-spi";
const AFTER_MS: u64 = 4 * 60_000;

/// One ROOT VM (M14) and one SPI VM (S1, node `h-SPI-VM-1`), launching after 4 min.
fn launch_host() -> Host {
    let mut host = demand_host_with(
        |c| {
            c.launch_any_node_after_ms = AFTER_MS;
            c.spi_labels = vec![ANY.into()];
        },
        &[
            (M14, Team::Root, PowerState::Stopped),
            (S1, Team::Spi, PowerState::Stopped),
        ],
    );
    host.advance(3_600_000);
    host
}

/// Jenkins' view: a build for any node queued at `since`, no idle agent, and these nodes
/// offline (sorted by name).
fn any_node_build(since: Millis, offline: &[&str]) -> DemandSnapshot {
    DemandSnapshot {
        jenkins_queue: vec![JenkinsQueued {
            label: ANY.into(),
            since_ms: since,
        }],
        jenkins_offline_nodes: offline.iter().map(|n| (*n).to_owned()).collect(),
        ..Default::default()
    }
}

/// Feed `snapshot` at `at` (the host's clock moved there) and settle.
fn feed_at(host: &mut Host, at: Millis, snapshot: DemandSnapshot) {
    host.advance(at.saturating_sub(host.now));
    host.feed(Input::Demand(Box::new(snapshot)));
    host.settle();
}

#[test]
fn a_free_host_launches_its_own_node_once_a_build_for_any_node_has_waited() {
    let mut host = launch_host();
    let since = host.now;
    // `g-…` sorts first: the node Jenkins keeps launching (its host runs a job); this host's
    // node is second, so it has the first turn with it.
    let offline = ["g-SPI-VM-1", S1, "i-SPI-VM-1"];
    feed_at(
        &mut host,
        since + AFTER_MS - 1_000,
        any_node_build(since, &offline),
    );
    assert!(host.launches.is_empty(), "too early: {:?}", host.launches);
    feed_at(&mut host, since + AFTER_MS, any_node_build(since, &offline));
    assert_eq!(host.launches, vec![(S1.to_owned(), S1.to_owned())]);
    let decisions = host.world.status(host.now).decisions;
    assert!(
        (decisions.iter()).any(|d| d.text.contains("launching Jenkins node h-SPI-VM-1")),
        "{decisions:?}"
    );
    // Not again while Jenkins runs the start script: nothing boots meanwhile either.
    feed_at(
        &mut host,
        since + AFTER_MS + 60_000,
        any_node_build(since, &offline),
    );
    assert_eq!(host.launches.len(), 1);
    assert!(host.running().is_empty(), "{:?}", host.log);
    // The start script asks; the host is free: granted.
    let req = host.command("jenkins", slot(S1, 300_000));
    host.settle();
    assert!(
        matches!(host.reply(req), Ok(Response::SlotGranted(_))),
        "{:?}",
        host.reply(req)
    );
}

#[test]
fn hosts_take_turns_in_the_order_of_their_nodes_among_the_offline_ones() {
    let mut host = launch_host();
    let since = host.now;
    // Fourth offline node: third turn, two turns (2 min each) after the first.
    let offline = ["a-SPI-VM-1", "b-SPI-VM-1", "c-SPI-VM-1", S1];
    let due = since + AFTER_MS + 2 * 2 * 60_000;
    feed_at(&mut host, due - 1_000, any_node_build(since, &offline));
    assert!(host.launches.is_empty(), "{:?}", host.launches);
    // A host ahead has launched its node, whose agent is listed idle: nothing to launch for
    // when the turn comes.
    let mut taken = any_node_build(since, &offline);
    taken.jenkins_idle_agents = vec!["a-SPI-VM-1".into()];
    feed_at(&mut host, due - 500, taken);
    host.advance(60_000);
    assert!(host.launches.is_empty(), "{:?}", host.launches);
    // Its agent took another build and nobody else launched: this host's turn.
    feed_at(&mut host, due + 61_000, any_node_build(since, &offline));
    assert_eq!(host.launches.len(), 1);
}

#[test]
fn a_host_with_root_work_or_a_node_not_listed_offline_does_not_launch() {
    // An unmet ROOT job this host could run: ROOT's, not a launch.
    let mut host = launch_host();
    let since = host.now;
    let mut with_job = any_node_build(since, &[S1]);
    with_job.root_jobs = vec![job(4, since, "mac14")];
    feed_at(&mut host, since + AFTER_MS, with_job);
    assert!(host.launches.is_empty(), "{:?}", host.launches);
    assert_eq!(host.running(), vec![M14.to_owned()]);
    // Its runner runs the job: still none (busy, and used).
    host.jobs.insert(M14.into(), "Runner.Worker".into());
    let mut running = any_node_build(since, &[S1]);
    running.used_here = vec![M14.into()];
    feed_at(&mut host, since + AFTER_MS + 120_000, running);
    assert!(host.launches.is_empty(), "{:?}", host.launches);

    // A node Jenkins does not list offline (no node list, or not this VM's name).
    let mut host = launch_host();
    let since = host.now;
    feed_at(&mut host, since + AFTER_MS, any_node_build(since, &[]));
    assert!(host.launches.is_empty(), "{:?}", host.launches);
    // A build for a named node is Jenkins' to launch: that node is the only one.
    let mut named = any_node_build(since, &[S1]);
    named.jenkins_queue[0].label = "g-SPI-VM-1".into();
    feed_at(&mut host, since + AFTER_MS + 1_000, named);
    assert!(host.launches.is_empty(), "{:?}", host.launches);
}

#[test]
fn launching_is_off_at_zero() {
    let mut host = demand_host_with(
        |c| c.spi_labels = vec![ANY.into()],
        &[(S1, Team::Spi, PowerState::Stopped)],
    );
    let since = host.now;
    feed_at(&mut host, since + 3_600_000, any_node_build(since, &[S1]));
    assert!(host.launches.is_empty(), "{:?}", host.launches);
}

//! Engine tests: determinism, the sample traces, and that each invariant check fires when
//! its rule is broken (driven directly, since the real scheduler does not break them).

use marble_proto::PowerState;
use marbled::sched::{Action, OpId, ProbeResult, StopKind};

use super::engine::{Engine, RunOptions, simulate};
use super::host::{JobRef, ProbeSeen, RunningJob};
use super::trace::Trace;

fn sample(name: &str) -> Trace {
    let text = match name {
        "cycle-mixed" => include_str!("../../docs/traces/cycle-mixed.toml"),
        "cycle-faults" => include_str!("../../docs/traces/cycle-faults.toml"),
        other => panic!("no sample {other}"),
    };
    Trace::parse(text, std::path::Path::new(name)).expect("sample trace parses")
}

#[test]
fn same_trace_and_seed_give_the_same_metrics() {
    let trace = sample("cycle-faults");
    let opts = RunOptions {
        seed: Some(3),
        ..RunOptions::default()
    };
    let a = simulate(&trace, opts).to_json();
    let b = simulate(&trace, opts).to_json();
    assert_eq!(a, b);
    let c = simulate(
        &trace,
        RunOptions {
            seed: Some(4),
            ..opts
        },
    )
    .to_json();
    assert_ne!(a, c, "the seed must reach boot times, faults and jitter");
}

#[test]
fn the_cycle_sample_runs_jobs_of_both_teams_without_violations() {
    let report = simulate(&sample("cycle-mixed"), RunOptions::default());
    assert!(report.violations.is_empty(), "{:?}", report.violations);
    assert!(report.teams["root"].completed > 0, "{}", report.to_table());
    assert!(report.teams["spi"].completed > 0, "{}", report.to_table());
    assert!(report.vm_boots > 0);
    assert_eq!(report.policy, "cycle");
}

fn engine() -> Engine {
    let mut trace = Trace::default();
    trace.host.root_vms = 2;
    // The job `run_job` puts in a VM.
    trace.root_jobs.push(super::trace::RootJobSpec {
        at: std::time::Duration::ZERO,
        duration: std::time::Duration::from_secs(600),
        labels: vec!["self-hosted".into()],
    });
    Engine::new(&trace, RunOptions::default())
}

fn run_job(e: &mut Engine, vi: usize) {
    e.vms[vi].power = PowerState::Running;
    e.vms[vi].ready_at = Some(e.now);
    e.vms[vi].job = Some(RunningJob {
        id: 77,
        job: JobRef::Root(0),
        started: e.now,
    });
}

#[test]
fn two_vms_on_a_host_of_one_is_a_violation() {
    let mut e = engine();
    e.check_capacity();
    assert!(e.violations.is_empty());
    e.vms[0].power = PowerState::Running;
    e.vms[1].power = PowerState::Starting;
    e.check_capacity();
    e.check_capacity();
    assert_eq!(e.violations.by_kind.get("over_capacity"), Some(&1));
}

#[test]
fn an_op_for_a_vm_with_one_in_flight_is_a_violation() {
    let mut e = engine();
    e.start_op(0, OpId(1), "sim-ROOT-VM-1", &Action::Start);
    assert!(e.violations.is_empty());
    e.start_op(0, OpId(2), "sim-ROOT-VM-1", &Action::Stop(StopKind::Kill));
    assert_eq!(e.violations.by_kind.get("op_in_flight"), Some(&1));
    e.start_op(0, OpId(2), "sim-ROOT-VM-2", &Action::Start);
    assert_eq!(e.violations.by_kind.get("duplicate_op"), Some(&1));
}

#[test]
fn stopping_a_vm_whose_probe_said_busy_or_unknown_is_a_violation() {
    for result in [
        ProbeResult::Busy("Runner.Worker".into()),
        ProbeResult::Unknown("exec failed".into()),
    ] {
        let mut e = engine();
        run_job(&mut e, 0);
        e.vms[0].last_probe = Some(ProbeSeen {
            at: e.now,
            result: result.clone(),
        });
        e.start_op(
            0,
            OpId(1),
            "sim-ROOT-VM-1",
            &Action::Stop(StopKind::Graceful),
        );
        assert_eq!(
            e.violations.by_kind.get("stop_busy_or_unknown"),
            Some(&1),
            "{result:?}"
        );
    }
}

#[test]
fn stopping_a_vm_with_a_job_never_probed_is_a_violation_but_an_idle_one_is_a_race() {
    let mut e = engine();
    run_job(&mut e, 0);
    e.start_op(0, OpId(1), "sim-ROOT-VM-1", &Action::Stop(StopKind::Kill));
    assert_eq!(e.violations.by_kind.get("stop_unprobed_job"), Some(&1));

    // Probe said idle, then a job started: the race, counted when the stop kills the job.
    let mut e = engine();
    e.vms[0].last_probe = Some(ProbeSeen {
        at: e.now,
        result: ProbeResult::Idle,
    });
    run_job(&mut e, 0);
    e.start_op(0, OpId(1), "sim-ROOT-VM-1", &Action::Stop(StopKind::Kill));
    assert!(e.violations.is_empty(), "{:?}", e.violations);
    e.op_due(0, OpId(1));
    assert_eq!(e.race_interruptions, 1);
    assert_eq!(e.stats_root.interrupted, 1);
    assert_eq!(e.vms[0].power, PowerState::Stopped);
}

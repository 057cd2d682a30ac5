//! Issue 17 (`stagger`): warm runners that yield twice for one job. Hosts holding idle warm
//! runners of other platforms give one up to a job none of them can take once it has waited
//! `warm_yield`; each host decided alone, so two or three hosts whose 60 s expired within a
//! few seconds all gave theirs up for the same job (`labels@2002` jobs #32 and #37: one boot
//! thrown away and a platform left cold). The runner the first host boots for the job shows in
//! the feed only ~13 s after its decision (probe, stop, fresh snapshot), too late for the
//! others. Now the hosts that could yield are ranked (the same order on every host, from the
//! feed's free runners) and the k-th yields only `k × 30 s` later, on a snapshot taken after
//! that; the job is never orphaned: if the first host's yield or boot fails, the next one's
//! turn comes.
//!
//! Second fault: *a yield wait counted as congestion*. A job that waited `warm_yield` marked
//! the fleet full, which holds every warm boot for 30 min; but a job waiting for a warm
//! runner to yield waits behind idle runners, not a full fleet, and the hosts freed meanwhile
//! sat empty (`labels@2002`, +10h 42m: two jobs cold on free hosts). Now the fleet is full
//! only when such a job waits and no idle runner is left anywhere to yield.
//!
//! Traces set only workload, fleet, boot model and faults (no `[scheduler]` keys).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use marble_sim::Trace;

use common::{demand, parse_workload, root_host as host};

fn job(at_s: u64, label: &str) -> String {
    format!(
        "\n[[root_jobs]]\nat = \"{at_s}s\"\nduration = \"300s\"\n\
         labels = [\"self-hosted\", \"macOS\", \"ARM64\", \"{label}\"]\n"
    )
}

/// Three idle hosts: after 10 min idle-host warmth gives them warm mac13, mac14 and mac15
/// runners (one each). A mac-beta job at 1 h and a mac15 job at 3 h find every host holding
/// a runner of another platform, so one host must yield for each. `faults`: `[[faults]]`
/// blocks.
fn trace(faults: &str) -> Trace {
    trace_with(
        &(job(3600, "macbeta") + &job(3 * 3600 + 10, "mac15")),
        faults,
    )
}

/// The three hosts of [`trace`] with `jobs` (`[[root_jobs]]` blocks) and `faults`.
fn trace_with(jobs: &str, faults: &str) -> Trace {
    let mut text = String::from("jenkins = []\n");
    if faults.is_empty() {
        text += "faults = []\n";
    }
    text += "\n[sim]\nduration = \"6h\"\nseed = 17\n";
    for i in 1..=3 {
        text += &host(i);
    }
    text += "\n[boot]\nmin = \"60s\"\nmax = \"60s\"\nslow_rate = 0.0\n";
    text += jobs;
    text += faults;
    parse_workload(&text, "policy_yield.toml")
}

#[test]
fn one_warm_runner_yields_for_one_unmet_job() {
    let report = demand(&trace(""));
    let table = report.to_table();
    assert!(report.violations.is_empty(), "{table}");
    let root = &report.teams["root"];
    assert_eq!(root.started, 2, "{table}");
    // Boots: 3 idle-host warm runners at 10 min, a boot for each job on the yielding host,
    // and the warm runners refilled after each job (the yielded platform and the job's spent
    // one). Before: two hosts yielded for the mac-beta job and all three for the mac15 job
    // (5 yields for 2 jobs): 10 ROOT boots, 8 unused. Now one host yields for the mac-beta
    // job, the mac15 runner stays and takes the mac15 job: 6 boots.
    assert!(
        report.root_boots <= 7,
        "{} ROOT boots: warm runners yielded more than once per job\n{table}",
        report.root_boots
    );
    // The first-ranked host yields at its first tick after `warm_yield`, then the probe, the
    // stop, a fresh snapshot and the boot: 60 s + up to a 10 s tick + ~13 s + 60 s. (Here
    // 143.5 s: the first-ranked host's tick came 10 s after the host that yielded first
    // before, 133.5 s.)
    let max = root.wait_max_ms.unwrap();
    assert!(max <= 150_000, "ROOT wait max {max} ms\n{table}");
}

#[test]
fn a_failed_boot_on_the_yielding_host_does_not_orphan_the_job() {
    // Every boot of mac-beta fails on the host ranked first for the mac-beta job (mac02,
    // holding mac13: ranks follow the runners' labels) and on the one holding mac14 (mac03):
    // the guest never answers. mac02 yields, boots mac-beta for the job and retries it after
    // each 5 min readiness timeout until the VM is quarantined (3 failures); its booting
    // runner covers the job meanwhile, as for any host's failed boot. Whenever the job is
    // unmet again, the later-ranked hosts' turns have come: one yields, and the job starts on
    // mac01's healthy mac-beta VM (18.5 min: three readiness timeouts).
    let faults = "\n[[faults]]\nkind = \"boot\"\nvm = \"mac02-ROOT-VM-macOS-beta\"\n\
                  \n[[faults]]\nkind = \"boot\"\nvm = \"mac03-ROOT-VM-macOS-beta\"\n";
    let report = demand(&trace(faults));
    let table = report.to_table();
    assert!(report.violations.is_empty(), "{table}");
    let root = &report.teams["root"];
    assert_eq!(root.started, root.arrived, "0 lost jobs\n{table}");
    assert!(report.boot_failures >= 3, "the fault never fired\n{table}");
    let max = root.wait_max_ms.unwrap();
    assert!(max <= 20 * 60_000, "ROOT wait max {max} ms\n{table}");
}

#[test]
fn a_yield_wait_does_not_hold_warm_boots_on_free_hosts() {
    // The mac-beta job at 1 h waits for a warm runner to yield (mac02 gives up its mac13),
    // runs 5 min and frees mac02 at ~1 h 8 min. A second mac-beta job comes at 1 h 25 min.
    // Before, the first job's wait marked the fleet full and no warm boot came until 1 h 31 min:
    // the second job waited a whole boot (62 s) on the free host. Now mac02 boots an
    // idle-host warm runner 10 min after it became free (1 h 18 min) and the job takes it.
    let jobs = job(3600, "macbeta") + &job(5100, "macbeta");
    let report = demand(&trace_with(&jobs, ""));
    let table = report.to_table();
    assert!(report.violations.is_empty(), "{table}");
    let root = &report.teams["root"];
    assert_eq!(root.started, 2, "{table}");
    assert_eq!(
        root.cold_starts, 1,
        "the second job found no warm runner\n{table}"
    );
    let p50 = root.wait_p50_ms.unwrap();
    assert!(p50 <= 10_000, "ROOT wait p50 {p50} ms\n{table}");
}

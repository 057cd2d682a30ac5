//! Issue 17, fault 4: labels that cannot match ROOT's jobs. ROOT's workflows ask for
//! `[self-hosted, macOS, ARM64, mac13|mac14|mac15|mac-beta]` and for mac14 with `X64`; the
//! seed's VMs are named `…-ROOT-VM-macOS-13/14/15/beta`. Before the fix a beta VM got no
//! `mac-beta` label (the daemon: none at all), so those jobs never started, and no setting
//! could give a VM `X64`. Every trace here sets only workload and fleet (names, `arch`,
//! `[labels]` rules); the scheduler runs with its defaults under policy `demand`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use marble_sim::ideal::ideal;
use marble_sim::{Report, RunOptions, Trace, simulate};

/// Two hosts with the seed's ROOT VM names and one SPI VM each; `extra` goes after the
/// `[[hosts]]` entries' common keys (host 2 gets `host2` as extra keys, e.g. `arch`).
fn fleet(host2: &str, extra: &str) -> String {
    let host = |n: u32, keys: &str| {
        let p = format!("macphsft0{n}");
        format!(
            r#"
[[hosts]]
prefix = "{p}"
root_vms = 0
spi_vms = 0
{keys}
vms = [
  {{ name = "{p}-ROOT-VM-macOS-13" }},
  {{ name = "{p}-ROOT-VM-macOS-14" }},
  {{ name = "{p}-ROOT-VM-macOS-15" }},
  {{ name = "{p}-ROOT-VM-macOS-beta" }},
  {{ name = "{p}-SPI-VM-1" }},
]
"#
        )
    };
    format!(
        r#"
[sim]
duration = "8h"
seed = 17
{}{}
[boot]
min = "1m"
max = "2m"

[scheduler]
policy = "demand"
# These tests count the boots label matching causes; idle-host warmth (its own tests:
# policy_trickle.rs, sched/tests/warm.rs) would add warm boots on the idle second host.
warm_idle_hosts = false
{extra}
"#,
        host(1, ""),
        host(2, host2)
    )
}

/// A 4-job workflow run (mac13, mac14, mac15, mac-beta) at 0h10, 2h10 and 4h10, 20 min
/// each; with `x64`, also a mac14 `X64` job at 1h and 5h.
fn workload(x64: bool) -> String {
    let mut out = String::new();
    let mut job = |at: &str, labels: &[&str]| {
        let labels: Vec<String> = labels.iter().map(|l| format!("{l:?}")).collect();
        out.push_str(&format!(
            "\n[[root_jobs]]\nat = \"{at}\"\nduration = \"20m\"\nlabels = [{}]\n",
            labels.join(", ")
        ));
    };
    for h in [0, 2, 4] {
        for v in ["mac13", "mac14", "mac15", "mac-beta"] {
            job(&format!("{h}h 10m"), &["self-hosted", "macOS", "ARM64", v]);
        }
    }
    if x64 {
        for at in ["1h", "5h"] {
            job(at, &["self-hosted", "macOS", "X64", "mac14"]);
        }
    }
    out
}

fn run(text: &str) -> (Trace, Report) {
    let trace = Trace::parse(text, std::path::Path::new("labels.toml")).expect("trace parses");
    let report = simulate(&trace, RunOptions::default());
    assert!(report.violations.is_empty(), "{}", report.to_table());
    (trace, report)
}

#[test]
fn roots_real_label_sets_all_start_on_the_seeds_vm_names() {
    // Before the fix: 9 of 12 started, the 3 mac-beta jobs never (the beta VM lacked the
    // label), and the ideal reference called them unservable too.
    let (trace, report) = run(&(fleet("", "") + &workload(false)));
    let root = &report.teams["root"];
    assert_eq!(root.arrived, 12, "{}", report.to_table());
    assert_eq!(root.started, 12, "{}", report.to_table());
    assert_eq!(root.never_started, 0, "{}", report.to_table());
    assert_eq!(ideal(&trace, 17).root_only.unservable, 0);
    // One boot per job: nothing boots twice for a label it cannot serve.
    assert_eq!(report.root_boots, 12, "{}", report.to_table());
}

#[test]
fn an_x64_label_on_an_apple_silicon_vm_is_served_where_the_operator_put_it() {
    // The operator's choice 1: `X64` as a label on host 1's mac14 VM. Before the fix the
    // trace did not load (no `[labels]`), and no setting gave any VM `X64`.
    let rule = r#"
[[labels.vms]]
name = "macphsft01-ROOT-VM-macOS-14"
add = ["X64"]
"#;
    let (trace, report) = run(&(fleet("", rule) + &workload(true)));
    let root = &report.teams["root"];
    assert_eq!(root.arrived, 14, "{}", report.to_table());
    assert_eq!(root.started, 14, "{}", report.to_table());
    assert_eq!(ideal(&trace, 17).root_only.unservable, 0);
}

#[test]
fn an_x64_job_runs_on_an_intel_host_from_its_architecture() {
    // The operator's choice 2: host 2 is an Intel Mac; its runners carry `X64` (the daemon
    // reads it from its build, the simulator from `arch`). Its VMs then lack `ARM64`, so
    // ARM64 jobs run on host 1 only. Before the fix: no `arch` key, no `X64` anywhere.
    let (trace, report) = run(&(fleet("arch = \"X64\"", "") + &workload(true)));
    let root = &report.teams["root"];
    assert_eq!(root.started, 14, "{}", report.to_table());
    assert_eq!(ideal(&trace, 17).root_only.unservable, 0);
    assert!(
        report.hosts[1].vm_boots >= 2,
        "the X64 jobs ran on the Intel host: {:?}",
        report.hosts
    );
}

#[test]
fn a_job_no_vm_of_the_fleet_can_serve_boots_nothing() {
    // No VM has `X64`: the two X64 jobs wait (the daemon reports them in `status` and in
    // `marble_demand_unservable_jobs`), and the scheduler boots nothing for them.
    let (trace, report) = run(&(fleet("", "") + &workload(true)));
    let root = &report.teams["root"];
    assert_eq!(root.arrived, 14);
    assert_eq!(root.started, 12, "{}", report.to_table());
    assert_eq!(ideal(&trace, 17).root_only.unservable, 2);
    assert_eq!(report.root_boots, 12, "{}", report.to_table());
    assert_eq!(report.root_boots_unused, 0, "{}", report.to_table());
}

#[test]
fn labels_match_without_case_in_the_simulated_github_as_in_the_real_one() {
    // GitHub matches `runs-on` to runner labels case-insensitively, and so does the
    // scheduler; the simulator's GitHub compared exactly, so a job spelled `macos`/`MAC14`
    // made `demand` boot a VM the simulated GitHub then never gave it.
    let jobs = r#"
[[root_jobs]]
at = "10m"
duration = "20m"
labels = ["self-hosted", "macos", "arm64", "MAC14"]
"#;
    let (trace, report) = run(&(fleet("", "") + jobs));
    assert_eq!(ideal(&trace, 17).root_only.unservable, 0);
    assert_eq!(report.teams["root"].started, 1, "{}", report.to_table());
    assert_eq!(report.root_boots_unused, 0, "{}", report.to_table());
}

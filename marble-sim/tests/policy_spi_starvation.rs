//! Issue 17, fault 2: Jenkins starves under sustained ROOT load. On a fleet that long ROOT
//! matrix jobs keep busy for days (docs/traces/spi-starvation.toml), policy `demand` must
//! grant Jenkins' slot requests no later than the old cycler does (SPI grant latency p95 ≤
//! `cycle`'s), with the shipped scheduler settings: the trace sets none. The same for a
//! nightly wave of ROOT matrix runs (docs/traces/spi-nightly-wave.toml).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use marble_sim::Trace;
use marble_sim::compare::compare;
use marble_sim::metrics::fmt_ms;

fn trace(name: &str) -> Trace {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../docs/traces")
        .join(name);
    let trace = Trace::load(&path).unwrap();
    assert_eq!(
        trace.scheduler,
        marbled::config::SchedulerSection::default(),
        "{name}: a trace sets only workload, fleet, boots and faults"
    );
    trace
}

/// Both runs clean, every job started, and demand's SPI grant p95 no worse than cycle's.
fn assert_spi_not_starved(name: &str) {
    let cmp = compare(&trace(name), None);
    let table = cmp.to_table(name);
    assert!(cmp.clean(), "{table}");
    for team in ["root", "spi"] {
        let t = &cmp.demand.teams[team];
        assert_eq!(t.started, t.arrived, "{team}: {table}");
    }
    let demand = cmp.demand.spi_grant_latency.p95_ms.expect("grants");
    let cycle = cmp.cycle.spi_grant_latency.p95_ms.expect("grants");
    assert!(
        demand <= cycle,
        "SPI grant p95: demand {} > cycle {}\n{table}",
        fmt_ms(demand),
        fmt_ms(cycle)
    );
}

#[test]
fn jenkins_is_not_starved_by_days_of_long_root_jobs() {
    assert_spi_not_starved("spi-starvation.toml");
}

#[test]
fn jenkins_is_not_starved_by_a_nightly_wave_of_root_jobs() {
    assert_spi_not_starved("spi-nightly-wave.toml");
}

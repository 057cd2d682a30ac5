//! The trace file (TOML) that `marble-sim` replays: the schema — the simulated host,
//! scheduler overrides, boot-time distribution, explicit and generated arrivals, and injected
//! faults — and what the engine resolves from it (the hosts' VMs, the scheduler config).
//! `docs/SIMULATOR.md` documents every key. Reading and parsing a file, and its errors, are
//! in `load`; the semantic checks in `crate::validate`.

use std::collections::BTreeSet;
use std::time::Duration;

use marble_proto::Team;
use marbled::config::Policy;
use marbled::config::{Config, LabelsSection, SchedulerSection, TeamsSection};
use marbled::inventory::TeamMap;
use marbled::sched::LabelMap;
use marbled::sched::SchedConfig;
use serde::{Deserialize, Serialize};

mod load;

pub use load::{TraceError, TraceProblem};

/// Labels every simulated ROOT VM and job carries unless the trace says otherwise.
pub const DEFAULT_ROOT_LABELS: [&str; 3] = ["self-hosted", "macOS", "ARM64"];

/// A whole trace file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct Trace {
    /// Run length, seed and the simulated hypervisor's latencies.
    pub sim: SimSection,
    /// The simulated host (a single-host trace).
    #[serde(skip_serializing_if = "HostSection::is_default")]
    pub host: HostSection,
    /// Several hosts sharing one GitHub queue, one runner list and one Jenkins; when given,
    /// `[host]` must be left out. Each entry has the keys of `[host]`; its `prefix` is the
    /// host's name.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<HostSection>,
    /// Boot-time distribution.
    pub boot: BootSection,
    /// Scheduler overrides: the same keys as `[scheduler]` in `marbled.toml`.
    pub scheduler: SchedulerSection,
    /// Runner labels: the same keys as `[labels]` in `marbled.toml` (per-VM rules; `arch`
    /// overrides every host's), applied by the daemon's own mapping.
    #[serde(skip_serializing_if = "LabelsSection::is_default")]
    pub labels: LabelsSection,
    /// Explicit GitHub (ROOT) job arrivals.
    pub root_jobs: Vec<RootJobSpec>,
    /// Explicit Jenkins (SPI) build arrivals.
    pub jenkins: Vec<JenkinsSpec>,
    /// Generated arrivals.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub generate: Option<GenerateSection>,
    /// Injected faults.
    pub faults: Vec<FaultSpec>,
}

/// `[sim]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SimSection {
    /// Virtual time simulated.
    #[serde(with = "humantime_serde")]
    pub duration: Duration,
    /// Seed of every random draw (boot times, fault rates, the scheduler's jitter, and
    /// generated arrivals unless `generate.seed` is set). `--seed` overrides it.
    pub seed: u64,
    /// How long `prlctl start` takes to return (the guest then keeps booting).
    #[serde(with = "humantime_serde")]
    pub start_latency: Duration,
    /// How long `prlctl resume` takes; a resumed guest answers at once.
    #[serde(with = "humantime_serde")]
    pub resume_latency: Duration,
    /// How long a graceful stop takes.
    #[serde(with = "humantime_serde")]
    pub stop_latency: Duration,
    /// How long `prlctl stop --kill` (and `--drop-state`) takes.
    #[serde(with = "humantime_serde")]
    pub kill_latency: Duration,
    /// How long a busy probe takes.
    #[serde(with = "humantime_serde")]
    pub probe_latency: Duration,
    /// How long `prlctl list` takes.
    #[serde(with = "humantime_serde")]
    pub inventory_latency: Duration,
    /// A slot request must be answered within its `wait` plus the scheduler's graceful
    /// stop and readiness timeouts plus this, or it is a violation.
    #[serde(with = "humantime_serde")]
    pub reply_slack: Duration,
    /// Policy `demand`: how often each host's demand source polls GitHub (hosts poll out of
    /// phase); zero feeds every host a fresh snapshot whenever the queue or the runner list
    /// changes (no polling latency).
    #[serde(with = "humantime_serde")]
    pub demand_poll: Duration,
    /// Policy `demand`: `[demand] watch` — a host with nothing running checks the queued-runs
    /// listing this often and polls at once when a new run is queued; zero: off.
    #[serde(with = "humantime_serde")]
    pub demand_watch: Duration,
    /// Which node the simulated Jenkins launches for a build any SPI node can run
    /// (`vm = "any"`): see [`JenkinsLaunch`].
    pub jenkins_launch: JenkinsLaunch,
}

/// How the simulated Jenkins picks the node to launch (run the start script for) for a build
/// any SPI node can run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum JenkinsLaunch {
    /// The SPI nodes in turn, from a seeded one: the model of the figures measured before
    /// the fifteenth session. Real Jenkins does not do this (next variant); kept to compare.
    InTurn,
    /// Jenkins' own `Demand` retention strategy (`RetentionStrategy.Demand.check`, run for
    /// every node once a round in `Jenkins.getComputers()` order, which sorts by name): the
    /// first offline node by name that can take a build no idle *or connecting* executor
    /// covers, one launch per build at a time, and after a refused launch the first offline
    /// node by name again — the same node while it stays offline. The default: what a real
    /// controller does.
    #[default]
    FirstOffline,
}

impl Default for SimSection {
    fn default() -> Self {
        Self {
            duration: Duration::from_secs(4 * 3600),
            seed: 0,
            start_latency: Duration::from_secs(5),
            resume_latency: Duration::from_secs(3),
            stop_latency: Duration::from_secs(10),
            kill_latency: Duration::from_secs(1),
            probe_latency: Duration::from_secs(2),
            inventory_latency: Duration::from_millis(500),
            reply_slack: Duration::from_secs(60),
            demand_poll: Duration::from_secs(30),
            demand_watch: marbled::config::DemandSection::default().watch,
            jenkins_launch: JenkinsLaunch::default(),
        }
    }
}

/// `[host]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct HostSection {
    /// VMs that may occupy the host at once (ground truth for the capacity check).
    pub capacity: u32,
    /// Name prefix of generated VMs (`<prefix>-ROOT-VM-<n>`).
    pub prefix: String,
    /// Generated ROOT VMs.
    pub root_vms: u32,
    /// Generated SPI VMs.
    pub spi_vms: u32,
    /// The host's architecture label (`ARM64` on Apple silicon, `X64` on Intel): what the
    /// daemon reads from its build (`std::env::consts::ARCH`).
    pub arch: String,
    /// Runner labels of generated ROOT VMs; default: the daemon's mapping of their names.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub root_labels: Option<Vec<String>>,
    /// Further VMs, named explicitly (team from the name, as the daemon's default patterns).
    pub vms: Vec<VmSpec>,
}

impl Default for HostSection {
    fn default() -> Self {
        Self {
            capacity: 1,
            prefix: "sim".into(),
            root_vms: 2,
            spi_vms: 1,
            arch: "ARM64".into(),
            root_labels: None,
            vms: Vec::new(),
        }
    }
}

impl HostSection {
    /// Every key at its default (left out when a trace is written).
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

/// `[[host.vms]]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct VmSpec {
    /// VM name.
    pub name: String,
    /// Runner labels (ROOT VMs), replacing the daemon's mapping of the name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub labels: Option<Vec<String>>,
    /// Power state at the start.
    pub power: InitialPower,
}

impl Default for VmSpec {
    fn default() -> Self {
        Self {
            name: String::new(),
            labels: None,
            power: InitialPower::Stopped,
        }
    }
}

/// Power state of a VM when the simulation starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum InitialPower {
    /// Stopped.
    Stopped,
    /// Running with its guest up.
    Running,
    /// Suspended.
    Suspended,
}

/// `[boot]`: boot time (start until the guest answers) is uniform in [min, max]; with
/// probability `slow_rate` it is a slow boot instead, uniform in [max, slow_max] (cold
/// caches, a macOS update check: the long tail seen on real hosts).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct BootSection {
    /// Shortest boot.
    #[serde(with = "humantime_serde")]
    pub min: Duration,
    /// Longest ordinary boot.
    #[serde(with = "humantime_serde")]
    pub max: Duration,
    /// Share of slow boots (0 = none).
    #[serde(skip_serializing_if = "is_zero_f64")]
    pub slow_rate: f64,
    /// Longest slow boot (default `max`).
    #[serde(
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none",
        default
    )]
    pub slow_max: Option<Duration>,
}

impl BootSection {
    /// One boot time, ms: uniform in [min, max], or a slow boot in [max, slow_max] with
    /// probability `slow_rate` (no draw for it when the rate is zero).
    pub fn draw(&self, rng: &mut super::rng::SimRng) -> u64 {
        let ms = super::engine::ms;
        let (min, max) = (ms(self.min), ms(self.max));
        if self.slow_rate > 0.0 && rng.chance(self.slow_rate) {
            return rng.range(max, self.slow_max.map_or(max, ms));
        }
        rng.range(min, max)
    }

    /// The share of boots [`BootSection::draw`] makes longer than `bar_ms` (a cold start
    /// waits at least its boot).
    pub fn share_longer_than(&self, bar_ms: u64) -> f64 {
        let ms = |d: Duration| d.as_millis() as f64;
        let bar = bar_ms as f64;
        // Uniform in [lo, hi]: the part above the bar.
        let above = |lo: f64, hi: f64| {
            if hi <= lo {
                f64::from(u8::from(lo > bar))
            } else {
                ((hi - bar) / (hi - lo)).clamp(0.0, 1.0)
            }
        };
        let (min, max) = (ms(self.min), ms(self.max));
        let slow_max = self.slow_max.map_or(max, ms);
        let slow = self.slow_rate.clamp(0.0, 1.0);
        (1.0 - slow) * above(min, max) + slow * above(max, slow_max)
    }
}

fn is_zero_f64(x: &f64) -> bool {
    *x == 0.0
}

impl Default for BootSection {
    fn default() -> Self {
        Self {
            min: Duration::from_secs(45),
            max: Duration::from_secs(90),
            slow_rate: 0.0,
            slow_max: None,
        }
    }
}

/// `[[root_jobs]]`: one GitHub Actions job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RootJobSpec {
    /// Arrival, from the start of the simulation.
    #[serde(with = "humantime_serde")]
    pub at: Duration,
    /// How long the job runs.
    #[serde(with = "humantime_serde")]
    pub duration: Duration,
    /// Labels the job asks for; it runs only on a ROOT VM carrying all of them.
    #[serde(default = "default_labels")]
    pub labels: Vec<String>,
}

/// `[[jenkins]]`: one Jenkins build that needs an SPI node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JenkinsSpec {
    /// Arrival, from the start of the simulation.
    #[serde(with = "humantime_serde")]
    pub at: Duration,
    /// The node (an SPI VM name), or `any`.
    #[serde(default = "any_vm")]
    pub vm: String,
    /// How long the build runs.
    #[serde(with = "humantime_serde")]
    pub duration: Duration,
    /// `request-slot --wait`.
    #[serde(with = "humantime_serde", default = "default_wait")]
    pub wait: Duration,
    /// Pause before Jenkins retries after a refusal.
    #[serde(with = "humantime_serde", default = "default_retry")]
    pub retry: Duration,
}

/// `[generate]`: Poisson arrivals per team.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct GenerateSection {
    /// Seed of the arrivals; default `sim.seed`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// Last arrival time; default `sim.duration`.
    #[serde(
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none",
        default
    )]
    pub until: Option<Duration>,
    /// ROOT jobs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub root: Option<GenRoot>,
    /// Jenkins builds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spi: Option<GenSpi>,
    /// The standard workload model: ROOT pushes by weekday hour, SPI nightly batches and
    /// daytime requests (`super::daily`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub daily: Option<super::daily::GenDaily>,
}

/// `[generate.root]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct GenRoot {
    /// Mean arrivals per hour.
    pub per_hour: f64,
    /// Shortest job.
    #[serde(with = "humantime_serde")]
    pub duration_min: Duration,
    /// Longest job.
    #[serde(with = "humantime_serde")]
    pub duration_max: Duration,
    /// Label sets; each job picks one uniformly.
    pub label_sets: Vec<Vec<String>>,
}

impl Default for GenRoot {
    fn default() -> Self {
        Self {
            per_hour: 4.0,
            duration_min: Duration::from_secs(5 * 60),
            duration_max: Duration::from_secs(30 * 60),
            label_sets: vec![default_labels()],
        }
    }
}

/// `[generate.spi]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct GenSpi {
    /// Mean arrivals per hour.
    pub per_hour: f64,
    /// Shortest build.
    #[serde(with = "humantime_serde")]
    pub duration_min: Duration,
    /// Longest build.
    #[serde(with = "humantime_serde")]
    pub duration_max: Duration,
    /// Nodes the builds ask for: SPI VM names or `any`; each build picks one uniformly.
    pub vms: Vec<String>,
    /// `request-slot --wait`.
    #[serde(with = "humantime_serde")]
    pub wait: Duration,
    /// Pause before a retry.
    #[serde(with = "humantime_serde")]
    pub retry: Duration,
}

impl Default for GenSpi {
    fn default() -> Self {
        Self {
            per_hour: 1.0,
            duration_min: Duration::from_secs(10 * 60),
            duration_max: Duration::from_secs(40 * 60),
            vms: vec![any_vm()],
            wait: default_wait(),
            retry: default_retry(),
        }
    }
}

/// `[[faults]]`: one injected fault.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FaultSpec {
    /// What goes wrong.
    pub kind: FaultKind,
    /// The VM it hits; every VM when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vm: Option<String>,
    /// Probability per occasion (each probe, boot, graceful stop, operation).
    #[serde(default = "one")]
    pub rate: f64,
    /// Start of the window (from the start of the simulation); default: the start.
    #[serde(
        with = "humantime_serde",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub from: Option<Duration>,
    /// End of the window; default: never.
    #[serde(
        with = "humantime_serde",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub until: Option<Duration>,
    /// `hang` only: which operations hang; all when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<HangAction>,
    /// `hang` only: how much later the operation reports.
    #[serde(
        with = "humantime_serde",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub delay: Option<Duration>,
}

impl FaultSpec {
    /// `kind` on every VM, at `rate`, for the whole run.
    pub fn everywhere(kind: FaultKind, rate: f64) -> FaultSpec {
        FaultSpec {
            kind,
            vm: None,
            rate,
            from: None,
            until: None,
            action: None,
            delay: None,
        }
    }

    /// `action` hangs on every VM at `rate` for the whole run, reporting `delay` late.
    pub fn hang(action: HangAction, rate: f64, delay: Duration) -> FaultSpec {
        FaultSpec {
            action: Some(action),
            delay: Some(delay),
            ..FaultSpec::everywhere(FaultKind::Hang, rate)
        }
    }
}

/// Kinds of injected faults.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FaultKind {
    /// A busy probe fails: the scheduler gets `Unknown`.
    Probe,
    /// A boot never becomes ready.
    Boot,
    /// A graceful stop returns success while the VM keeps running.
    StopIgnored,
    /// An operation reports only after `delay`.
    Hang,
}

/// Operations a `hang` fault can hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HangAction {
    /// `prlctl start`.
    Start,
    /// `prlctl resume`.
    Resume,
    /// Any `prlctl stop`.
    Stop,
    /// Busy probes.
    Probe,
    /// Readiness waits.
    WaitReady,
}

/// Default hang delay.
pub const DEFAULT_HANG_DELAY: Duration = Duration::from_secs(30 * 60);

fn default_labels() -> Vec<String> {
    DEFAULT_ROOT_LABELS
        .iter()
        .map(|s| (*s).to_owned())
        .collect()
}
fn any_vm() -> String {
    "any".into()
}
fn default_wait() -> Duration {
    Duration::from_secs(5 * 60)
}
fn default_retry() -> Duration {
    Duration::from_secs(60)
}
fn one() -> f64 {
    1.0
}

/// One VM of a simulated host, resolved from `[host]` or `[[hosts]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostVm {
    /// Index of its host (into [`Trace::host_sections`]).
    pub host: usize,
    /// Name.
    pub name: String,
    /// Team, from the name by the daemon's default patterns.
    pub team: Team,
    /// Runner labels (meaningful for ROOT).
    pub labels: BTreeSet<String>,
    /// Power at the start.
    pub power: InitialPower,
}

impl Trace {
    /// The simulated hosts: `[[hosts]]` when given, else `[host]`.
    pub fn host_sections(&self) -> Vec<&HostSection> {
        if self.hosts.is_empty() {
            vec![&self.host]
        } else {
            self.hosts.iter().collect()
        }
    }

    /// The TOML key of host `i` in messages (`host` or `hosts[i]`).
    pub fn host_key(&self, i: usize) -> String {
        if self.hosts.is_empty() {
            "host".into()
        } else {
            format!("hosts[{i}]")
        }
    }

    /// Every simulated VM, host by host: generated ones first, then the host's `vms`. A VM
    /// without explicit labels gets the daemon's own mapping ([`LabelMap`]: the name's
    /// `macOS-NN` / `macOS-beta`, the host's `arch`, the trace's `[labels]` rules); generated
    /// ones get the host's `root_labels` when set.
    pub fn host_vms(&self) -> Vec<HostVm> {
        let teams = TeamMap::new(&TeamsSection::default());
        let mut out = Vec::new();
        for (host, h) in self.host_sections().into_iter().enumerate() {
            let map = LabelMap::new(&h.arch, &[], &self.labels);
            let labels_of =
                |name: &str| -> BTreeSet<String> { map.labels(name).into_iter().collect() };
            let generated_labels = |name: &str| {
                h.root_labels
                    .as_ref()
                    .map_or_else(|| labels_of(name), |l| l.iter().cloned().collect())
            };
            for (count, word) in [(h.root_vms, "ROOT"), (h.spi_vms, "SPI")] {
                for n in 1..=count {
                    let name = format!("{}-{word}-VM-{n}", h.prefix);
                    out.push(HostVm {
                        host,
                        team: teams.team_of(&name),
                        labels: generated_labels(&name),
                        name,
                        power: InitialPower::Stopped,
                    });
                }
            }
            for vm in &h.vms {
                out.push(HostVm {
                    host,
                    team: teams.team_of(&vm.name),
                    name: vm.name.clone(),
                    labels: vm
                        .labels
                        .as_ref()
                        .map_or_else(|| labels_of(&vm.name), |l| l.iter().cloned().collect()),
                    power: vm.power,
                });
            }
        }
        out
    }

    /// The scheduler configuration: `[scheduler]` mapped as the daemon maps it, with the
    /// given policy override and seed.
    pub fn sched_config(&self, policy: Option<Policy>, seed: u64) -> SchedConfig {
        // The simulated Jenkins: every SPI node carries the label `any` builds ask for.
        let jenkins = marbled::config::JenkinsSection {
            labels: vec![crate::workload::ANY_NODE_LABEL.to_owned()],
            ..Default::default()
        };
        let config = Config {
            scheduler: self.scheduler.clone(),
            jenkins: Some(jenkins),
            ..Config::default()
        };
        let mut sched = config.sched_config();
        sched.seed = seed;
        // The simulated daemon has a GitHub runner lifecycle and a demand source, so the
        // registration watchdog runs at `github.registration_timeout`'s default, as in
        // production (it needs a demand feed: policy `demand` only, here).
        sched.runner_watchdog_ms = u64::try_from(
            marbled::config::GithubSection::default()
                .registration_timeout
                .as_millis(),
        )
        .unwrap_or(u64::MAX);
        if let Some(policy) = policy {
            sched.policy = policy;
        } else {
            sched.policy = parse_policy(&self.scheduler.policy).unwrap_or(Policy::Manual);
        }
        sched
    }
}

/// `cycle`, `demand` or `manual`, as in `marbled.toml`.
pub fn parse_policy(name: &str) -> Option<Policy> {
    match name {
        "cycle" => Some(Policy::Cycle),
        "demand" => Some(Policy::Demand),
        "manual" => Some(Policy::Manual),
        _ => None,
    }
}

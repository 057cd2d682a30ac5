//! `prlctl list`: filters (`-a`, `--stopped`, `-t`, positional VM), columns (`-o`), the plain
//! table (printf widths of §2.2), `--json` (tab-indented, §2.3) and `--info` text/JSON (§2.4),
//! plus the tiny ordered-JSON writer that reproduces prlctl's tab-indented layout.

use std::fmt::Write as _;

use super::super::SimError;
use super::super::faults::{FaultKind, take_fault};
use super::super::model::{SimState, Vm, format_datetime, format_hms, now_ms};
use super::super::store::Store;
use super::{NOT_FOUND, Outcome, unrecognized};

/// Known `-o` fields: name, header, printf width (`None` = never padded).
const FIELDS: &[(&str, &str, usize)] = &[
    ("uuid", "UUID", 39),
    ("status", "STATUS", 12),
    ("ip_configured", "IP_ADDR", 15),
    ("ip", "IP", 15),
    ("name", "NAME", 32),
    ("mac", "MAC", 18),
    ("home", "HOME", 48),
    ("os", "OS", 12),
    ("type", "T", 12),
    ("description", "DESCRIPTION", 24),
];

/// Default columns of PD's `prlctl list`.
const DEFAULT_FIELDS: &[&str] = &["uuid", "status", "ip_configured", "name"];

/// Garbage wrapped around JSON by the `list-garbage` fault (like GH-204/GH-219 in vagrant).
const GARBAGE_BEFORE: &str = "\u{1b}[0mWarning: the dispatcher answered late\u{7}\n";
const GARBAGE_AFTER: &str = "\nPrlSrv_LoginLocal: reconnected\u{0}\n";

/// State word of a VM, `invalid` when its bundle's `config.pvs` is gone.
pub fn state_word(vm: &Vm) -> &'static str {
    if vm.home.join("config.pvs").exists() {
        vm.state.as_str()
    } else {
        "invalid"
    }
}

#[derive(Default)]
struct Opts {
    all: bool,
    stopped: bool,
    template: bool,
    vm: Option<String>,
    fields: Option<Vec<String>>,
    no_header: bool,
    json: bool,
    info: bool,
    full: bool,
    sort: Option<String>,
    list_fields: bool,
}

fn parse(rest: &[String]) -> Result<Opts, Outcome> {
    let mut o = Opts::default();
    let mut it = rest.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "-a" | "--all" => o.all = true,
            "--stopped" => o.stopped = true,
            "-t" | "--template" => o.template = true,
            "--no-header" | "-H" => o.no_header = true,
            "-j" | "--json" => o.json = true,
            "-i" | "--info" => o.info = true,
            "-f" | "--full" => o.full = true,
            "-L" | "--list" => o.list_fields = true,
            "--name" => {}
            "-o" | "--output" => {
                let v = it.next().ok_or_else(|| unrecognized(a))?;
                o.fields = Some(v.split(',').map(str::to_owned).collect());
            }
            "-s" | "--sort" => o.sort = Some(it.next().ok_or_else(|| unrecognized(a))?.clone()),
            s if s.starts_with('-') => return Err(unrecognized(s)),
            s => o.vm = Some(s.to_owned()),
        }
    }
    Ok(o)
}

/// Run `prlctl list …`.
pub fn list(store: &Store, rest: &[String]) -> Result<Outcome, SimError> {
    let mut all = vec!["list".to_owned()];
    all.extend_from_slice(rest);
    store.with_state(|st| {
        let o = match parse(rest) {
            Ok(o) => o,
            Err(out) => return out,
        };
        if take_fault(st, "list", &all, |k| matches!(k, FaultKind::LoginFailed)).is_some() {
            return Outcome::err(
                "Login failed: Unable to log in to the Parallels Service: the session was closed.",
                255,
            );
        }
        let garbage = o.json
            && take_fault(st, "list", &all, |k| matches!(k, FaultKind::ListGarbage)).is_some();
        let mut out = render(st, &o);
        if garbage && out.exit == 0 {
            let mut body = GARBAGE_BEFORE.as_bytes().to_vec();
            body.extend_from_slice(&out.stdout);
            body.extend_from_slice(GARBAGE_AFTER.as_bytes());
            out.stdout = body;
        }
        out
    })
}

fn render(st: &SimState, o: &Opts) -> Outcome {
    if o.list_fields {
        let mut s = String::new();
        for (f, h, _) in FIELDS {
            let _ = writeln!(s, "{f:<20} {h}");
        }
        return Outcome::ok(s);
    }
    let mut vms: Vec<&Vm> = match &o.vm {
        Some(id) => match st.find(id).and_then(|i| st.vms.get(i)) {
            Some(vm) => vec![vm],
            None => return Outcome::err(NOT_FOUND, 255),
        },
        None => st
            .vms
            .iter()
            .filter(|v| v.template == o.template)
            .filter(|v| {
                let w = state_word(v);
                if o.template || o.all {
                    true
                } else if o.stopped {
                    w == "stopped"
                } else {
                    w == "running"
                }
            })
            .collect(),
    };
    let now = now_ms();
    if o.info {
        vms.sort_by(|a, b| a.name.cmp(&b.name));
        return if o.json {
            let arr = J::Arr(vms.iter().map(|v| info_json(v, now)).collect());
            Outcome::ok(format!("{}\n", arr.pretty()))
        } else {
            Outcome::ok(info_text(&vms, now, o.no_header))
        };
    }
    let fields: Vec<String> = o
        .fields
        .clone()
        .unwrap_or_else(|| DEFAULT_FIELDS.iter().map(|s| (*s).to_owned()).collect());
    if let Some(bad) = fields
        .iter()
        .find(|f| !FIELDS.iter().any(|(n, _, _)| n == f))
    {
        return Outcome::err(format!("Unknown field: {bad}"), 1);
    }
    let (key, desc) = match (&o.sort, &o.fields) {
        (Some(s), _) => match s.strip_prefix('-') {
            Some(k) => (k.to_owned(), true),
            None => (s.clone(), false),
        },
        (None, Some(f)) => (f.first().cloned().unwrap_or_default(), false),
        (None, None) => ("name".to_owned(), false),
    };
    vms.sort_by_key(|v| field(v, &key, now, o.full, o.json));
    if desc {
        vms.reverse();
    }
    if o.json {
        let arr = J::Arr(
            vms.iter()
                .map(|v| {
                    J::Obj(
                        fields
                            .iter()
                            .map(|f| (f.clone(), J::s(field(v, f, now, o.full, true))))
                            .collect(),
                    )
                })
                .collect(),
        );
        return Outcome::ok(format!("{}\n", arr.pretty()));
    }
    let mut s = String::new();
    let width = |f: &str| {
        FIELDS
            .iter()
            .find(|(n, _, _)| *n == f)
            .map_or(0, |(_, _, w)| *w)
    };
    let mut row = |cells: Vec<String>| {
        let last = cells.len().saturating_sub(1);
        let mut line = String::new();
        for (i, (c, f)) in cells.iter().zip(&fields).enumerate() {
            if i == last {
                line.push_str(c);
            } else {
                let _ = write!(line, "{c:<w$} ", w = width(f));
            }
        }
        s.push_str(&line);
        s.push('\n');
    };
    if !o.no_header {
        row(fields
            .iter()
            .map(|f| {
                FIELDS
                    .iter()
                    .find(|(n, _, _)| n == f)
                    .map_or("", |(_, h, _)| h)
                    .to_owned()
            })
            .collect());
    }
    for v in &vms {
        row(fields
            .iter()
            .map(|f| field(v, f, now, o.full, false))
            .collect());
    }
    Outcome::ok(s)
}

/// One field's value; `-` when empty, braced UUID in tables and bare UUID in JSON.
fn field(vm: &Vm, f: &str, now: u64, full: bool, json: bool) -> String {
    let ready = vm.guest_ready(now);
    let v = match f {
        "uuid" if json => vm.uuid.clone(),
        "uuid" => vm.braced_uuid(),
        "name" => vm.name.clone(),
        "status" => state_word(vm).to_owned(),
        "ip_configured" if full && ready => vm.ip.clone(),
        "ip" if ready => vm.ip.clone(),
        "mac" => vm
            .nets
            .iter()
            .map(|n| format!("{} ", colon_mac(&n.mac)))
            .collect(),
        "home" => home_str(vm),
        "os" => vm.os.clone(),
        "type" => "VM".to_owned(),
        "description" => vm.description.clone(),
        _ => String::new(),
    };
    if v.is_empty() { "-".to_owned() } else { v }
}

fn colon_mac(mac: &str) -> String {
    let b = mac.as_bytes();
    b.chunks(2)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join(":")
}

fn home_str(vm: &Vm) -> String {
    let h = vm.home.display().to_string();
    if h.ends_with('/') { h } else { format!("{h}/") }
}

fn uptime_secs(vm: &Vm, now: u64) -> u64 {
    vm.started_ms.map_or(0, |s| now.saturating_sub(s) / 1000)
}

fn on_off(b: bool) -> &'static str {
    if b { "on" } else { "off" }
}

fn info_text(vms: &[&Vm], now: u64, no_header: bool) -> String {
    let mut s = String::new();
    for vm in vms {
        if !no_header {
            s.push_str("INFO\n");
        }
        let up = uptime_secs(vm, now);
        let since = vm
            .started_ms
            .map_or_else(|| format_datetime(now), format_datetime);
        let _ = writeln!(s, "ID: {}", vm.braced_uuid());
        let _ = writeln!(s, "Name: {}", vm.name);
        let _ = writeln!(
            s,
            "{}",
            format!("Description: {}", vm.description).trim_end()
        );
        let _ = writeln!(s, "Type: {}", vm.vm_type);
        let _ = writeln!(s, "State: {}", state_word(vm));
        let _ = writeln!(s, "OS: {}", vm.os);
        let _ = writeln!(s, "Template: {}", if vm.template { "yes" } else { "no" });
        let _ = writeln!(s, "Uptime: {} (since {since})", format_hms(up));
        let _ = writeln!(s, "Home path: {}config.pvs", home_str(vm));
        let _ = writeln!(s, "Home: {}", home_str(vm));
        if let Some(r) = &vm.restore_image {
            let _ = writeln!(s, "Restore Image: {r}");
        }
        let _ = writeln!(
            s,
            "GuestTools: state={} version={}",
            vm.tools_state, vm.tools_version
        );
        let _ = writeln!(s, "Autostart: off");
        let _ = writeln!(s, "Startup view: {}", vm.startup_view);
        let _ = writeln!(s, "Boot order: hdd0 cdrom0 usb");
        let _ = writeln!(s, "BIOS type: efi-arm64");
        s.push_str("Hardware:\n");
        let _ = writeln!(s, "  cpu cpus={} VT-x accl=high mode=64 type=arm", vm.cpus);
        let _ = writeln!(s, "  memory {}Mb", vm.memsize_mb);
        for h in &vm.hdds {
            let _ = writeln!(
                s,
                "  {} (+) sata:{} image='{}' type={} {}Mb",
                h.name,
                &h.name[3..],
                h.image.display(),
                h.kind,
                h.size_mb
            );
        }
        for n in &vm.nets {
            let iface = n
                .iface
                .as_ref()
                .map(|i| format!(" iface='{i}'"))
                .unwrap_or_default();
            let sign = if n.enabled { "+" } else { "-" };
            let _ = writeln!(
                s,
                "  {} ({sign}) type={}{iface} mac={} card=virtio",
                n.name, n.kind, n.mac
            );
        }
        let _ = writeln!(
            s,
            "Host Shared Folders: ({})",
            if vm.shf_host { "+" } else { "-" }
        );
        let _ = writeln!(s, "Host defined sharing: {}", vm.shf_host_defined);
        let _ = writeln!(s, "Isolated: {}", on_off(vm.isolated));
        let _ = writeln!(s, "Share host location: off");
    }
    s
}

fn info_json(vm: &Vm, now: u64) -> J {
    let mut hw = vec![
        (
            "cpu".to_owned(),
            J::obj([
                ("cpus", J::Num(u64::from(vm.cpus))),
                ("auto", J::s("off")),
                ("VT-x", J::Bool(true)),
                ("hotplug", J::Bool(false)),
                ("accl", J::s("high")),
                ("mode", J::s("64")),
                ("type", J::s("arm")),
            ]),
        ),
        (
            "memory".to_owned(),
            J::obj([
                ("size", J::s(format!("{}Mb", vm.memsize_mb))),
                ("auto", J::s("off")),
                ("hotplug", J::Bool(false)),
            ]),
        ),
    ];
    for h in &vm.hdds {
        hw.push((
            h.name.clone(),
            J::obj([
                ("enabled", J::Bool(true)),
                ("port", J::s(format!("sata:{}", &h.name[3..]))),
                ("image", J::s(h.image.display().to_string())),
                ("type", J::s(h.kind.clone())),
                ("size", J::s(format!("{}Mb", h.size_mb))),
                ("online-compact", J::s("off")),
            ]),
        ));
    }
    for n in &vm.nets {
        let mut fields = vec![
            ("enabled", J::Bool(n.enabled)),
            ("type", J::s(n.kind.clone())),
        ];
        if let Some(i) = &n.iface {
            fields.push(("iface", J::s(i.clone())));
        }
        fields.push(("mac", J::s(n.mac.clone())));
        fields.push(("card", J::s("virtio")));
        hw.push((n.name.clone(), J::obj(fields)));
    }
    let ips = if vm.guest_ready(now) {
        J::Arr(vec![J::obj([
            ("type", J::s("ipv4")),
            ("ip", J::s(vm.ip.clone())),
        ])])
    } else {
        J::Arr(Vec::new())
    };
    let mut top = vec![
        ("ID", J::s(vm.uuid.clone())),
        ("Name", J::s(vm.name.clone())),
        ("Description", J::s(vm.description.clone())),
        ("Type", J::s(vm.vm_type.clone())),
        ("State", J::s(state_word(vm))),
        ("OS", J::s(vm.os.clone())),
        ("Template", J::s(if vm.template { "yes" } else { "no" })),
        ("Uptime", J::s(uptime_secs(vm, now).to_string())),
        ("Home path", J::s(format!("{}config.pvs", home_str(vm)))),
        ("Home", J::s(home_str(vm))),
    ];
    if let Some(r) = &vm.restore_image {
        top.push(("Restore Image", J::s(r.clone())));
    }
    top.extend([
        (
            "GuestTools",
            J::obj([
                ("state", J::s(vm.tools_state.clone())),
                ("version", J::s(vm.tools_version.clone())),
            ]),
        ),
        (
            "Startup and Shutdown",
            J::obj([
                ("Autostart", J::s("off")),
                ("Autostart delay", J::Num(0)),
                ("Autostop", J::s("suspend")),
                ("Startup view", J::s(vm.startup_view.clone())),
                ("On shutdown", J::s("window")),
                ("On window close", J::s("suspend")),
                ("Pause idle", J::s("off")),
                ("Undo disks", J::s("off")),
            ]),
        ),
        (
            "Optimization",
            J::obj([
                ("Faster virtual machine", J::s("on")),
                ("Hypervisor type", J::s("apple")),
            ]),
        ),
        (
            "Security",
            J::obj([
                ("Encrypted", J::s("off")),
                ("TPM enabled", J::s("off")),
                ("Custom password protection", J::s("off")),
                ("Configuration is locked", J::s("off")),
                ("Protected", J::s("off")),
                ("Archived", J::s("off")),
                ("Packed", J::s("off")),
            ]),
        ),
        ("Boot order", J::s("hdd0 cdrom0 usb")),
        ("BIOS type", J::s("efi-arm64")),
        ("Hardware", J::Obj(hw)),
        (
            "Host Shared Folders",
            J::obj([("enabled", J::Bool(vm.shf_host))]),
        ),
        ("Host defined sharing", J::s(vm.shf_host_defined.clone())),
        ("Isolated", J::s(on_off(vm.isolated))),
        (
            "Network",
            J::obj([
                ("Conditioned", J::s("off")),
                ("Inbound", J::obj([])),
                ("Outbound", J::obj([])),
                ("ipAddresses", ips),
            ]),
        ),
    ]);
    J::obj(top)
}

/// Ordered JSON value, printed like prlctl's writer: tab indentation, `"key": value`.
#[derive(Debug, Clone)]
pub enum J {
    /// String.
    Str(String),
    /// Unsigned number.
    Num(u64),
    /// Boolean.
    Bool(bool),
    /// Array.
    Arr(Vec<J>),
    /// Object with keys in insertion order.
    Obj(Vec<(String, J)>),
}

impl J {
    /// String value.
    pub fn s(v: impl Into<String>) -> J {
        J::Str(v.into())
    }

    /// Object from `(key, value)` pairs.
    pub fn obj<'a>(pairs: impl IntoIterator<Item = (&'a str, J)>) -> J {
        J::Obj(pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
    }

    /// Pretty text (no trailing newline).
    pub fn pretty(&self) -> String {
        let mut s = String::new();
        self.write(&mut s, 0);
        s
    }

    fn write(&self, s: &mut String, depth: usize) {
        let pad = |s: &mut String, d: usize| s.extend(std::iter::repeat_n('\t', d));
        match self {
            J::Str(v) => s.push_str(&serde_json::Value::String(v.clone()).to_string()),
            J::Num(n) => {
                let _ = write!(s, "{n}");
            }
            J::Bool(b) => {
                let _ = write!(s, "{b}");
            }
            J::Arr(items) if items.is_empty() => s.push_str("[]"),
            J::Obj(items) if items.is_empty() => s.push_str("{}"),
            J::Arr(items) => {
                s.push_str("[\n");
                for (i, item) in items.iter().enumerate() {
                    pad(s, depth + 1);
                    item.write(s, depth + 1);
                    s.push_str(if i + 1 < items.len() { ",\n" } else { "\n" });
                }
                pad(s, depth);
                s.push(']');
            }
            J::Obj(items) => {
                s.push_str("{\n");
                for (i, (k, v)) in items.iter().enumerate() {
                    pad(s, depth + 1);
                    s.push_str(&serde_json::Value::String(k.clone()).to_string());
                    s.push_str(": ");
                    v.write(s, depth + 1);
                    s.push_str(if i + 1 < items.len() { ",\n" } else { "\n" });
                }
                pad(s, depth);
                s.push('}');
            }
        }
    }
}

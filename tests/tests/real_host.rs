//! The on-Mac acceptance suite (`docs/ACCEPTANCE.md`) as tests.
//!
//! - `acceptance_suite` (ignored): the whole suite, configured by `MARBLE_ACCEPT_*`
//!   variables; `scripts/acceptance-mac.sh` runs it on a real host, and with `--simulator`
//!   against the prlctl simulator (CI). Fails when any check fails.
//! - `keychain_probe` (ignored): run by the suite itself as a LaunchDaemon job to read a
//!   Keychain item the way the daemon does under launchd.
//! - `repository_fixtures_parse`: the suite's parse validations over the prlctl fixtures in
//!   the repository, including every `tests/fixtures/prlctl-real/<version>/` directory an
//!   operator sent back, so real outputs stay regression tests.

use std::path::{Path, PathBuf};

use marble_proto::PowerState;
use marble_tests::acceptance::{self, parse};

#[test]
#[ignore = "needs a Mac with Parallels (or MARBLE_ACCEPT_SIMULATOR=1): scripts/acceptance-mac.sh"]
fn acceptance_suite() {
    let summary = acceptance::run_from_env().expect("the acceptance suite could not start");
    println!("{}", summary.line);
    assert!(
        summary.failed.is_empty(),
        "failed checks: {}",
        summary.failed.join(", ")
    );
}

#[test]
#[ignore = "run by the acceptance suite as a LaunchDaemon job (launchd.keychain)"]
fn keychain_probe() {
    let out = std::env::var("MARBLE_ACCEPT_KEYCHAIN_OUT").expect("MARBLE_ACCEPT_KEYCHAIN_OUT");
    let service = std::env::var("MARBLE_ACCEPT_KEYCHAIN_SERVICE").expect("service");
    let account = std::env::var("MARBLE_ACCEPT_KEYCHAIN_ACCOUNT").expect("account");
    let line = acceptance::launchd::keychain_probe_line(&service, &account);
    std::fs::write(out, line).expect("write the probe result");
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
}

/// The validations the suite runs live, over one directory of captured outputs; a file that
/// is absent is not checked (older runs captured fewer). Returns how many files were checked.
fn validate_dir(dir: &Path) -> usize {
    let mut checked = 0;
    let mut check = |name: &str, f: &dyn Fn(&str) -> anyhow::Result<String>| {
        let p = dir.join(name);
        if p.is_file() {
            if let Err(e) = f(&read(&p)) {
                panic!("{}: {e:#}", p.display());
            }
            checked += 1;
        }
    };
    check("version.txt", &|r| parse::validate_version(r));
    check("list_a_json.json", &|r| {
        let table = dir.join("list_a_table.txt");
        if table.is_file() {
            parse::validate_list(r, Some(&read(&table)))
        } else {
            parse::validate_list(r, None)
        }
    });
    check("list_a_json_running.json", &|r| {
        parse::validate_list(r, None)
    });
    check("list_i_json_macos.json", &|r| parse::validate_info(r, None));
    check("list_i_json_macos_running.json", &|r| {
        parse::validate_info(r, None)
    });
    check("status_stopped.txt", &|r| {
        parse::validate_status(r, &PowerState::Stopped)
    });
    check("status_running.txt", &|r| {
        parse::validate_status(r, &PowerState::Running)
    });
    check("snapshot_list_json_empty.txt", &|r| {
        parse::validate_snapshots(r, 0)
    });
    check("snapshot_list_json.json", &|r| {
        parse::validate_snapshots(r, 1)
    });
    check("prlsrvctl_info_json.json", &|r| {
        parse::validate_server_info(r)
    });
    check("prlsrvctl_info_license_json.json", &|r| {
        parse::validate_license(r)
    });
    checked
}

#[test]
fn repository_fixtures_parse() {
    // The reference fixtures the adapter tests use (public PD outputs) pass the same
    // validations the suite applies to a real host's outputs.
    let adapter = fixtures().join("prlctl-adapter");
    parse::validate_info(&read(&adapter.join("list_i_json_macos.json")), None)
        .expect("list_i_json_macos.json");
    parse::validate_snapshots(&read(&adapter.join("snapshot_list.json")), 1)
        .expect("snapshot_list.json");
    let reference = fixtures().join("prlctl");
    parse::validate_snapshots(&read(&reference.join("snapshot_list_json.json")), 1)
        .expect("snapshot_list_json.json");
    parse::validate_list(&read(&reference.join("list_a_full_json.json")), None)
        .expect("list_a_full_json.json");
    // A broken output must fail the validation, or the checks above prove nothing.
    assert!(parse::validate_info("[{\"ID\": \"x\"}]", None).is_err());
    assert!(parse::validate_snapshots("{}", 1).is_err());

    // Outputs sent back from real hosts (docs/ACCEPTANCE.md), one directory per PD version.
    let real = fixtures().join("prlctl-real");
    if let Ok(dirs) = std::fs::read_dir(&real) {
        for d in dirs.flatten().filter(|d| d.path().is_dir()) {
            let n = validate_dir(&d.path());
            assert!(n > 0, "{} holds no known fixture", d.path().display());
        }
    }
}

#[test]
fn a_simulator_capture_passes_the_fixture_validations() {
    // What `acceptance-mac.sh --simulator` captures has the layout of a real capture; the
    // directory validator reads it the way it will read a real host's. Produce one with the
    // simulator's own outputs.
    use marble_tests::prlsim::SimHost;
    let dir = tempfile::tempdir().unwrap();
    let sim = SimHost::create(dir.path().join("sim")).unwrap();
    sim.add_vm("vm-a").unwrap();
    let fake = marble_tests::harness::bin_path("fake-prlctl");
    let run = |args: &[&str]| {
        let r = sim.prlctl(&fake, args, None).unwrap();
        assert_eq!(r.code, 0, "{args:?}: {}", r.stderr);
        r.stdout
    };
    let cap = dir.path().join("capture");
    std::fs::create_dir_all(&cap).unwrap();
    std::fs::write(cap.join("version.txt"), run(&["--version"])).unwrap();
    std::fs::write(cap.join("list_a_json.json"), run(&["list", "-a", "--json"])).unwrap();
    std::fs::write(cap.join("list_a_table.txt"), run(&["list", "-a"])).unwrap();
    std::fs::write(
        cap.join("list_i_json_macos.json"),
        run(&["list", "-i", "--json", "vm-a"]),
    )
    .unwrap();
    std::fs::write(cap.join("status_stopped.txt"), run(&["status", "vm-a"])).unwrap();
    std::fs::write(
        cap.join("snapshot_list_json_empty.txt"),
        run(&["snapshot-list", "vm-a", "--json"]),
    )
    .unwrap();
    // Five validations (the table is read together with list_a_json.json).
    assert_eq!(validate_dir(&cap), 5);
}

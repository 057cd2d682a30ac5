//! `fake-prlctl` reproduces the literal outputs of reference/prlctl.md byte for byte: table
//! widths, tab-indented JSON with key order, messages and exit codes.

use std::path::{Path, PathBuf};

use marble_tests::prlsim::{PrlRun, SimHost, VmState};

fn exe() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_fake-prlctl"))
}

fn fixture(name: &str) -> String {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/prlctl")
        .join(name);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn host() -> (tempfile::TempDir, SimHost) {
    let dir = tempfile::tempdir().expect("test helper");
    let host = SimHost::create(dir.path()).expect("test helper");
    (dir, host)
}

fn prl(h: &SimHost, args: &[&str]) -> PrlRun {
    h.prlctl(exe(), args, None).expect("test helper")
}

/// Give a VM a fixed UUID (the reference's) so outputs are comparable.
fn pin_uuid(h: &SimHost, name: &str, uuid: &str) {
    h.update(|st| {
        let i = st.find(name).expect("test helper");
        st.vms[i].uuid = uuid.to_owned();
    })
    .expect("test helper");
}

#[test]
fn list_all_table_matches_the_reference_layout() {
    let (_d, h) = host();
    for (name, uuid) in [
        ("VM macOS Mojave", "edbe0c40-83dc-4505-8941-bac038897648"),
        ("macOS Catalina", "14c73b9b-c677-4647-9fe8-ad71f2b23b53"),
        (
            "Clone_2 of VM macOS Mojave",
            "168c789e-caa6-4b83-bb84-a1f18c26e1f3",
        ),
    ] {
        h.add_vm(name).unwrap();
        pin_uuid(&h, name, uuid);
    }
    h.set_vm_state("macOS Catalina", VmState::Running).unwrap();
    h.set_vm_state("macOS Catalina", VmState::Paused).unwrap();
    let r = prl(&h, &["list", "-a"]);
    assert_eq!((r.code, r.stderr.as_str()), (0, ""));
    assert_eq!(r.stdout, fixture("list_a_table.txt"));
    // Default list shows running VMs only (a paused VM is not running): header only.
    assert_eq!(prl(&h, &["list"]).stdout, fixture("list_a_empty.txt"));
}

#[test]
fn empty_host_prints_the_header_only() {
    let (_d, h) = host();
    assert_eq!(prl(&h, &["list", "-a"]).stdout, fixture("list_a_empty.txt"));
    assert_eq!(prl(&h, &["list", "-a", "--no-header"]).stdout, "");
}

#[test]
fn list_json_is_tab_indented_with_bare_uuids_in_field_order() {
    let (_d, h) = host();
    h.add_running_vm("builder-01").unwrap();
    h.add_vm("stopped-vm").unwrap();
    pin_uuid(&h, "builder-01", "8d66f605-e28d-412b-b3c9-028c316072c9");
    pin_uuid(&h, "stopped-vm", "83193991-61fe-4ff7-93a9-6b51d9531f67");
    h.update(|st| {
        let i = st.find("builder-01").unwrap();
        st.vms[i].ip = "10.211.55.66".into();
    })
    .unwrap();
    let r = prl(&h, &["list", "-a", "--full", "--json"]);
    assert_eq!(r.code, 0);
    assert_eq!(r.stdout, fixture("list_a_full_json.json"));
    // Without --full the guest IP is not reported in ip_configured (§2.1).
    let plain: serde_json::Value =
        serde_json::from_str(&prl(&h, &["list", "-a", "-j"]).stdout).unwrap();
    assert_eq!(plain[0]["ip_configured"], "-");
}

#[test]
fn output_fields_no_header_and_single_vm_status() {
    let (_d, h) = host();
    let uuid = h.add_running_vm("macphsft01-ROOT-VM-macOS-14").unwrap();
    // docker-machine compares the whole string including the newline (§2.2).
    let r = prl(
        &h,
        &[
            "list",
            "macphsft01-ROOT-VM-macOS-14",
            "--no-header",
            "-o",
            "status",
        ],
    );
    assert_eq!(r.stdout, "running\n");
    let r = prl(&h, &["list", "-a", "-o", "name,uuid,os", "--no-header"]);
    let want = format!(
        "{:<32} {{{uuid}}}{:<2}macosx\n",
        "macphsft01-ROOT-VM-macOS-14", ""
    );
    assert_eq!(r.stdout, want);
    let r = prl(&h, &["list", "-a", "-o", "bogus"]);
    assert_eq!((r.code, r.stderr.as_str()), (1, "Unknown field: bogus\n"));
    // A positional VM is found by braced upper-case UUID too.
    let braced = format!("{{{}}}", uuid.to_uppercase());
    assert_eq!(
        prl(&h, &["list", &braced, "-o", "name", "--no-header"]).stdout,
        "macphsft01-ROOT-VM-macOS-14\n"
    );
    let r = prl(&h, &["status", &braced]);
    assert_eq!(r.stdout, format!("VM {braced} exist running\n"));
}

#[test]
fn unknown_vm_and_unknown_option_use_the_real_messages() {
    let (_d, h) = host();
    h.add_vm("a").unwrap();
    for args in [
        &["list", "nope"][..],
        &["start", "nope"],
        &["status", "nope"],
        &["exec", "nope", "true"],
    ] {
        let r = prl(&h, args);
        assert_eq!(r.code, 255, "{args:?}");
        assert_eq!(
            r.stderr, "Failed to get VM config: The virtual machine could not be found.\n",
            "{args:?}"
        );
        assert_eq!(r.stdout, "");
    }
    let r = prl(&h, &["set", "a", "--auto-share-bluetooth", "on"]);
    assert_eq!(
        (r.code, r.stderr.as_str()),
        (255, "Unrecognized option: --auto-share-bluetooth\n")
    );
    assert_eq!(
        prl(&h, &["--version"]).stdout,
        "prlctl version 26.3.2 (57398)\n"
    );
}

#[test]
fn info_json_has_the_real_keys_and_is_always_an_array() {
    let (_d, h) = host();
    let uuid = h.add_running_vm("vm1").unwrap();
    let r = prl(&h, &["list", "-i", "--json", "vm1"]);
    assert_eq!(r.code, 0);
    assert!(
        r.stdout.starts_with("[\n\t{\n\t\t\"ID\": \""),
        "{}",
        r.stdout
    );
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let vm = &v.as_array().unwrap()[0];
    assert_eq!(vm["ID"], uuid.as_str());
    assert_eq!(vm["Type"], "APPLE_VZ_VM");
    assert_eq!(vm["OS"], "macosx");
    assert_eq!(vm["State"], "running");
    assert_eq!(vm["GuestTools"]["state"], "installed");
    assert_eq!(vm["Hardware"]["memory"]["size"], "8192Mb");
    assert_eq!(vm["Hardware"]["cpu"]["cpus"], 4);
    let mac = vm["Hardware"]["net0"]["mac"].as_str().unwrap();
    assert!(mac.starts_with("001C42") && mac.len() == 12);
    assert!(vm["Home"].as_str().unwrap().ends_with("vm1.macvm/"));
    assert!(
        vm["Home path"]
            .as_str()
            .unwrap()
            .ends_with("vm1.macvm/config.pvs")
    );
    let text = prl(&h, &["list", "-i", "vm1"]).stdout;
    assert!(text.starts_with("INFO\nID: {"));
    assert!(text.contains("\nName: vm1\n") && text.contains("\nState: running\n"));
    assert!(text.contains(&format!(" mac={mac} card=")));
}

#[test]
fn snapshot_list_matches_the_reference_shapes() {
    let (_d, h) = host();
    h.add_vm("vm1").unwrap();
    assert_eq!(
        prl(&h, &["snapshot-list", "vm1", "--json"]).stdout,
        "",
        "empty output, not {{}}"
    );
    let r = prl(&h, &["snapshot", "vm1", "-n", "clean-os"]);
    assert_eq!(r.code, 0);
    let id = r
        .stdout
        .split_whitespace()
        .find(|w| w.starts_with('{'))
        .unwrap()
        .to_owned();
    assert_eq!(
        r.stdout,
        format!(
            "Creating the snapshot...\nThe snapshot with id {id} has been successfully created.\n"
        )
    );
    h.update(|st| {
        let vm = &mut st.vms[0];
        vm.snapshots[0].id = "{351b744b-3b1b-422c-957f-cfeae36b472d}".into();
        vm.snapshots[0].date = "2025-07-10 11:41:38".into();
        vm.current_snapshot = Some("{351b744b-3b1b-422c-957f-cfeae36b472d}".into());
    })
    .unwrap();
    assert_eq!(
        prl(&h, &["snapshot-list", "vm1", "--json"]).stdout,
        fixture("snapshot_list_json.json")
    );
    h.update(|st| {
        let vm = &mut st.vms[0];
        vm.snapshots[0].id = "{64d481bb-ce04-45b1-8328-49e4e4c43ddf}".into();
        vm.current_snapshot = Some("{64d481bb-ce04-45b1-8328-49e4e4c43ddf}".into());
    })
    .unwrap();
    assert_eq!(
        prl(&h, &["snapshot-list", "vm1"]).stdout,
        fixture("snapshot_list_plain.txt")
    );
    let r = prl(
        &h,
        &[
            "snapshot-delete",
            "vm1",
            "-i",
            "{64d481bb-ce04-45b1-8328-49e4e4c43ddf}",
        ],
    );
    assert_eq!(
        r.stdout,
        "Delete the snapshot...\nThe snapshot has been successfully deleted.\n"
    );
    assert_eq!(prl(&h, &["snapshot-list", "vm1", "--json"]).stdout, "");
    let r = prl(
        &h,
        &[
            "snapshot-delete",
            "vm1",
            "--id",
            "{64d481bb-ce04-45b1-8328-49e4e4c43ddf}",
        ],
    );
    assert_eq!(r.code, 255);
}

//! The simulator's bundles on disk behave like Parallels' (issue 13 §2): `clone` keeps a
//! disk's holes (PD clones a `.macvm` with APFS clonefile, so a push reads what it would read
//! on a Mac), `create --no-hdd` then `set --device-add hdd --type plain --size MB` makes the
//! system disk as a sparse bundle, and `--isolate-vm` re-enables host sharing (PD 26.3.2).
//! Options the installed Parallels does not know fail as "Unrecognized option", exit 255.

use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};

use marble_tests::prlsim::{PrlRun, SimHost};

const MIB: u64 = 1024 * 1024;
const VM: &str = "macphsft01-ROOT-VM-macOS-14";

fn exe() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_fake-prlctl"))
}

fn prl(h: &SimHost, args: &[&str]) -> PrlRun {
    h.prlctl(exe(), args, None).expect("run fake-prlctl")
}

/// The `.hds` data file inside `bundle/harddisk.hdd`.
fn hds_of(bundle: &Path) -> PathBuf {
    std::fs::read_dir(bundle.join("harddisk.hdd"))
        .expect("harddisk.hdd")
        .map(|e| e.expect("entry").path())
        .find(|p| p.extension().is_some_and(|x| x == "hds"))
        .expect("an .hds in harddisk.hdd")
}

/// Same length and content, compared 1 MiB at a time.
fn assert_same_bytes(a: &Path, b: &Path) {
    let (fa, fb) = (
        std::fs::File::open(a).expect("open"),
        std::fs::File::open(b).expect("open"),
    );
    let len = fa.metadata().expect("stat").len();
    assert_eq!(fb.metadata().expect("stat").len(), len, "same length");
    let (mut ba, mut bb) = (vec![0u8; MIB as usize], vec![0u8; MIB as usize]);
    for off in (0..len).step_by(MIB as usize) {
        let n = usize::try_from((len - off).min(MIB)).expect("fits");
        fa.read_exact_at(&mut ba[..n], off).expect("read");
        fb.read_exact_at(&mut bb[..n], off).expect("read");
        assert!(ba[..n] == bb[..n], "bytes differ in the MiB at {off}");
    }
}

fn allocated(path: &Path) -> u64 {
    std::fs::metadata(path).expect("stat").blocks() * 512
}

#[test]
fn clone_keeps_the_holes_of_a_sparse_disk() {
    let dir = tempfile::tempdir().expect("tmp");
    let h = SimHost::create(dir.path()).expect("sim host");
    h.add_vm(VM).expect("add vm");
    let src = h.vm(VM).expect("vm");
    // 256 MiB apparent, 3 MiB of data in two places.
    let disk = hds_of(&src.home);
    let f = std::fs::File::create(&disk).expect("create disk");
    f.set_len(256 * MIB).expect("set_len");
    f.write_all_at(&vec![0x5a; 2 * MIB as usize], 0)
        .expect("write");
    f.write_all_at(&vec![0xa5; MIB as usize], 200 * MIB)
        .expect("write");
    drop(f);
    assert!(allocated(&disk) < 8 * MIB, "the source is sparse");

    let out = prl(&h, &["clone", VM, "--name", "clone-1"]);
    assert_eq!(out.code, 0, "{out:?}");
    let copy = hds_of(&h.vm("clone-1").expect("clone registered").home);
    assert_same_bytes(&disk, &copy);
    let used = allocated(&copy);
    assert!(
        used < 8 * MIB,
        "the clone's disk keeps its holes: {used} bytes allocated for 3 MiB of data"
    );
    // What a push of the clone reads: the data extents only, as on a Mac.
    let f = std::fs::File::open(&copy).expect("open clone");
    let extents = marbled::images::sparse::data_extents(&f, 256 * MIB).expect("extents");
    let payload: u64 = extents.iter().map(|e| e[1]).sum();
    assert!(
        payload < 8 * MIB,
        "a push would read {payload} bytes: {extents:?}"
    );
}

#[test]
fn create_without_a_disk_then_a_plain_64_gib_system_disk_is_a_sparse_bundle() {
    let dir = tempfile::tempdir().expect("tmp");
    let h = SimHost::create(dir.path()).expect("sim host");
    let ipsw = dir.path().join("UniversalMac_15.6_Restore.ipsw");
    std::fs::write(&ipsw, b"ipsw").expect("ipsw");
    let ipsw = ipsw.to_str().expect("utf-8");
    let out = prl(
        &h,
        &[
            "create",
            VM,
            "-o",
            "macos",
            "--no-hdd",
            "--restore-image",
            ipsw,
        ],
    );
    assert_eq!(out.code, 0, "{out:?}");
    let vm = h.vm(VM).expect("created");
    assert!(vm.hdds.is_empty(), "--no-hdd: {:?}", vm.hdds);
    assert!(!vm.home.join("harddisk.hdd").exists());

    let out = prl(
        &h,
        &[
            "set",
            VM,
            "--device-add",
            "hdd",
            "--type",
            "plain",
            "--size",
            "65536",
        ],
    );
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stdout.starts_with(&format!(
            "Created hdd0 (+) sata:0 image='{}' type=plain 65536Mb",
            vm.home.join("harddisk.hdd").display()
        )),
        "{}",
        out.stdout
    );
    let vm = h.vm(VM).expect("vm");
    assert_eq!(vm.hdds.len(), 1);
    assert_eq!(
        (vm.hdds[0].kind.as_str(), vm.hdds[0].size_mb),
        ("plain", 65536)
    );
    let hds = hds_of(&vm.home);
    assert_eq!(std::fs::metadata(&hds).expect("stat").len(), 65536 * MIB);
    assert!(allocated(&hds) < MIB, "a new plain disk is all hole");
    assert!(vm.home.join("harddisk.hdd/DiskDescriptor.xml").is_file());
    // The guest's files live on the system disk, so clones and images carry them.
    assert!(vm.guest_root().starts_with(vm.home.join("harddisk.hdd")));
}

#[test]
fn isolate_vm_off_turns_host_sharing_back_on() {
    let dir = tempfile::tempdir().expect("tmp");
    let h = SimHost::create(dir.path()).expect("sim host");
    h.add_vm(VM).expect("add vm");
    for args in [
        &["set", VM, "--shf-host", "off"][..],
        &["set", VM, "--auto-share-gamepad", "off"],
    ] {
        assert_eq!(prl(&h, args).code, 0, "{args:?}");
    }
    assert!(!h.vm(VM).expect("vm").shf_host);
    assert_eq!(prl(&h, &["set", VM, "--isolate-vm", "off"]).code, 0);
    let vm = h.vm(VM).expect("vm");
    assert!(vm.shf_host, "PD re-enables sharing with --isolate-vm");
    assert_eq!(
        vm.other_settings
            .get("--auto-share-gamepad")
            .map(String::as_str),
        Some("on")
    );
    // Applied again afterwards, the switch holds.
    assert_eq!(prl(&h, &["set", VM, "--shf-host", "off"]).code, 0);
    assert!(!h.vm(VM).expect("vm").shf_host);
}

#[test]
fn an_option_this_parallels_does_not_know_is_unrecognized_and_changes_nothing() {
    let dir = tempfile::tempdir().expect("tmp");
    let h = SimHost::create(dir.path()).expect("sim host");
    h.add_vm(VM).expect("add vm");
    h.update(|st| st.settings.unknown_options = vec!["--shared-profile".into()])
        .expect("settings");
    let out = prl(
        &h,
        &["set", VM, "--shf-host", "off", "--shared-profile", "off"],
    );
    assert_eq!(out.code, 255, "{out:?}");
    assert_eq!(out.stderr, "Unrecognized option: --shared-profile\n");
    assert!(h.vm(VM).expect("vm").shf_host, "nothing was applied");
    assert_eq!(prl(&h, &["set", VM, "--shf-host", "off"]).code, 0);
}

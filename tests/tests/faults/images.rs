//! Cases 8, 10, 11 and 12 of issue 15: image pulls and listings that fail for a reason a
//! person must act on — a hostile archive, a bad name, a full disk, an S3 server that answers
//! for another region or replaces an object — through the real CLI and daemon: the right exit
//! code, one line naming the cause, and nothing half-written left on the host.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::e2e_support::{SimEnv, ctl};
use marble_tests::harness::{DaemonProcess, bin_path};
use marble_tests::s3::LocalS3;
use marbled::images::ImageStore;

/// A simulated host whose daemon pulls from `s3` into `<dir>/pulled`.
fn env_with(s3: &LocalS3) -> SimEnv {
    let mut env = SimEnv::new();
    let mut images = s3.config();
    images.bundles_dir = Some(pulled_dir(&env));
    env.config.images = images;
    env
}

fn pulled_dir(env: &SimEnv) -> PathBuf {
    env.dir.path().join("pulled")
}

/// Entries of `dir` (none when it does not exist).
fn entries(dir: &Path) -> Vec<String> {
    match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// Upload the local file `path` as object `key` with the daemon's own store code.
fn upload(s3: &LocalS3, path: &Path, key: &str) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let store = ImageStore::new(s3.config()).await.unwrap();
        store.upload_file(path, key).await.unwrap();
    });
}

/// A zip holding `X.macvm/config.pvs` twice (Python's zipfile warns but writes it, as a
/// hostile or broken tool would).
fn zip_with_duplicate(path: &Path) {
    let script = format!(
        "import zipfile, warnings\nwarnings.simplefilter('ignore')\nz=zipfile.ZipFile({:?},'w')\nz.writestr('X.macvm/Snapshots.xml','ok')\nz.writestr('X.macvm/config.pvs','ok')\nz.writestr('X.macvm/config.pvs','pwned')\nz.close()\n",
        path.to_str().unwrap()
    );
    let st = Command::new("python3")
        .args(["-c", &script])
        .status()
        .expect("python3 needed");
    assert!(st.success());
}

/// Case 8: `image pull` of a zip with two entries of one name exits 65 naming the entry;
/// nothing is registered and nothing is left in the bundles directory.
#[test]
fn case_08_duplicate_zip_entries_exit_65_naming_the_entry() {
    let Some(s3) = LocalS3::start() else { return };
    let env = env_with(&s3);
    let name = "2025-02-01-ROOT-VM-dup";
    let zip = env.dir.path().join("dup.zip");
    zip_with_duplicate(&zip);
    upload(&s3, &zip, &format!("ROOT/{name}.zip"));
    let daemon = env.spawn();
    let vm = "macphsft-test-ROOT-VM-dup";
    let out = ctl(&daemon.socket, &["image", "pull", name, "--as", vm]);
    assert_eq!(out.code, 65, "{out}\n{}", daemon.log_text());
    assert!(
        out.stderr.contains("X.macvm/config.pvs"),
        "the message names the duplicated entry: {out}"
    );
    assert!(env.host.vm(vm).is_err(), "nothing registered");
    assert_eq!(
        entries(&pulled_dir(&env)),
        Vec::<String>::new(),
        "nothing left"
    );
}

/// Push `files` small files as a bundle `<name>.macvm` under image `name`.
fn push_bundle(s3: &LocalS3, name: &str, files: usize) {
    let work = tempfile::tempdir().unwrap();
    let bundle = work.path().join(format!("{name}.macvm"));
    std::fs::create_dir_all(&bundle).unwrap();
    for i in 0..files {
        let data = marble_tests::data::noise(i as u64, 64 * 1024);
        std::fs::write(bundle.join(format!("file-{i:02}.bin")), data).unwrap();
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let store = ImageStore::new(s3.config()).await.unwrap();
        let image = marbled::images::ImageName::parse(name).unwrap();
        store.push_dir(&bundle, &image, &|_| {}).await.unwrap();
    });
}

/// Whether this machine lets an unprivileged user mount a tmpfs in private user and mount
/// namespaces (`unshare -r -m`).
fn can_mount_tmpfs() -> bool {
    Command::new("unshare")
        .args(["-r", "-m", "sh", "-c", "mount -t tmpfs tmpfs /mnt"])
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Start the daemon of `env` in private user and mount namespaces where `dir` is a tmpfs
/// that holds at most `inodes` files and directories: creating one more fails with a real
/// ENOSPC from the kernel (bytes stay plentiful, so the pull's free-space check passes and
/// the failure comes mid-write, as when a disk fills during a pull). `exec` keeps the pid,
/// so `/proc/<pid>/root` shows the daemon's view of `dir`.
fn spawn_on_tiny_fs(env: &SimEnv, dir: &Path, inodes: u32) -> DaemonProcess {
    let config_path = env.dir.path().join("marbled.toml");
    std::fs::write(&config_path, toml::to_string(&env.config).unwrap()).unwrap();
    let log = env.dir.path().join("marbled-tinyfs.log");
    let script = format!(
        "mount -t tmpfs -o size=1g,nr_inodes={inodes} tmpfs \"$MARBLE_TINY\" && exec \"$0\" \"$@\""
    );
    let child = Command::new("unshare")
        .args(["-r", "-m", "sh", "-c", &script])
        .arg(bin_path("marbled-under-test"))
        .arg("--config")
        .arg(&config_path)
        .arg("run")
        .env("MARBLE_TINY", dir)
        .env("MARBLE_LOG", "debug")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let daemon = DaemonProcess {
        child,
        socket: env.config.daemon.socket.clone(),
        log,
    };
    env.wait_inventory(&daemon);
    daemon
}

/// Case 11: a pull that runs out of space mid-write exits 73 (EX_CANTCREAT) with the free and
/// needed bytes, not 70 ("internal bug"); the partial download is removed and nothing is
/// registered.
#[test]
fn case_11_enospc_during_a_pull_exits_73_with_the_bytes_and_leaves_nothing() {
    if !can_mount_tmpfs() {
        eprintln!("\n!!!!! SKIPPING case 11: `unshare -r -m` cannot mount a tmpfs here !!!!!\n");
        return;
    }
    let Some(s3) = LocalS3::start() else { return };
    let env = env_with(&s3);
    let name = "2025-03-01-ROOT-VM-full";
    push_bundle(&s3, name, 12);
    let pulled = pulled_dir(&env);
    std::fs::create_dir_all(&pulled).unwrap();
    // The root, the partial directory, its tree, the journal and a few files fit; the
    // twelve files of the bundle do not.
    let daemon = spawn_on_tiny_fs(&env, &pulled, 8);
    let seen = PathBuf::from(format!("/proc/{}/root", daemon.child.id())).join(
        pulled
            .strip_prefix("/")
            .expect("the bundles directory is absolute"),
    );
    assert_eq!(
        entries(&seen),
        Vec::<String>::new(),
        "the tmpfs starts empty"
    );
    let vm = "macphsft-test-ROOT-VM-full";
    let out = ctl(&daemon.socket, &["image", "pull", name, "--as", vm]);
    assert_eq!(out.code, 73, "{out}\n{}", daemon.log_text());
    let line = out.stderr.trim();
    assert!(line.contains("No space left on device"), "{out}");
    assert!(
        line.contains("bytes free") && line.contains("needs"),
        "the free and the needed bytes: {out}"
    );
    assert!(env.host.vm(vm).is_err(), "nothing registered");
    assert_eq!(
        entries(&seen),
        Vec::<String>::new(),
        "no partial download left"
    );
    // A rerun meets the same full disk, not a leftover of the first attempt.
    let again = ctl(&daemon.socket, &["image", "pull", name, "--as", vm]);
    assert_eq!(again.code, 73, "{again}");
    assert_eq!(
        entries(&seen),
        Vec::<String>::new(),
        "no partial download left"
    );
}

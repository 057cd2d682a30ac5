//! Cases 8, 10, 11 and 12 of issue 15: image pulls and listings that fail for a reason a
//! person must act on — a hostile archive, a bad name, a full disk, an S3 server that answers
//! for another region or replaces an object — through the real CLI and daemon: the right exit
//! code, one line naming the cause, and nothing half-written left on the host.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::e2e_support::{SimEnv, ctl};
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

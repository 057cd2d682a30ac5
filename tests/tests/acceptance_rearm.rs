//! The acceptance check `guest.runner-rearm` (tests/src/acceptance/rearm.rs) against the
//! simulated guest: it passes with the repository's runner script, and fails — naming what
//! went wrong — with a script that exits after its first runner (the pre-re-arm one) and
//! with one that leaves the used registration's credentials for the next runner.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;

use marble_tests::acceptance::rearm::{SCRIPT, rearm_with};
use marble_tests::acceptance::record::{Obs, Recorder, Verdict};
use marble_tests::acceptance::target::Env;
use marble_tests::acceptance::{Group, Settings};

const VM: &str = "marble-acceptance-rearm-test";

fn verdict(script: &str) -> Verdict {
    let dir = tempfile::tempdir().unwrap();
    let settings = Settings {
        simulator: true,
        out: dir.path().join("out"),
        source_vm: None,
        clone_name: None,
        prlctl: "/nonexistent".into(),
        prlsrvctl: "/nonexistent".into(),
        prl_disk_tool: "/nonexistent".into(),
        only: Group::ALL.into_iter().collect::<BTreeSet<_>>(),
        github: None,
        jenkins: None,
        s3_config: None,
        ssh_host: "localhost".into(),
        repo: dir.path().into(),
    };
    let rec = Recorder::create(&settings.out).unwrap();
    let work = dir.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let env = Env::new(settings, rec, work).unwrap();
    env.sim().unwrap().add_running_vm(VM).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(rearm_with(&env, &Obs::default(), VM, script))
        .unwrap()
}

#[test]
fn the_repository_script_passes() {
    let v = verdict(SCRIPT);
    assert!(matches!(v, Verdict::Pass(_)), "{v:?}");
}

#[test]
fn a_script_that_exits_after_its_first_runner_fails() {
    // The pre-re-arm script: one runner per boot, then exit.
    let old = SCRIPT.replace(
        "  log \"runner exited with status $rc\"\n",
        "  log \"runner exited with status $rc\"\n  exit 0\n",
    );
    assert_ne!(old, SCRIPT, "the script changed: update this test");
    match verdict(&old) {
        Verdict::Fail(why) => assert!(why.contains("did not wait for a next config"), "{why}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_script_that_keeps_the_used_credentials_fails() {
    let keeps = SCRIPT.replace(
        "  rm -f \"$RUNNER_DIR/.runner\" \"$RUNNER_DIR/.credentials\" \"$RUNNER_DIR/.credentials_rsaparams\"\ndone",
        "done",
    );
    assert_ne!(keeps, SCRIPT, "the script changed: update this test");
    match verdict(&keeps) {
        // (On a Mac the second runner also reports them "stale"; a simulated second start
        // of the script clears them at its top, as a boot would.)
        Verdict::Fail(why) => assert!(why.contains("were not removed"), "{why}"),
        other => panic!("{other:?}"),
    }
}

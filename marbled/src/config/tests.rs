//! Tests of the whole `marbled.toml`: defaults round-trip, problems reported at once and
//! naming their keys, the optional CI sections.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::*;

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(text, Path::new("test.toml"))
}

#[test]
fn default_config_round_trips_and_is_valid() {
    let text = Config::default_toml();
    let parsed = parse(&text).expect("default config parses");
    assert_eq!(parsed, Config::default());
}

#[test]
fn every_unknown_key_and_bad_value_is_reported_at_once() {
    let err = parse(
        "[daemon]\nsokcet = \"/x\"\n[scheduler]\ncapacity = 0\npolicy = \"random\"\nfoo = 1\n",
    )
    .expect_err("invalid");
    let ConfigError::Invalid { problems, .. } = err else {
        panic!("wrong error {err:?}")
    };
    let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "daemon.sokcet",
            "scheduler.foo",
            "scheduler.policy",
            "scheduler.capacity"
        ]
    );
}

#[test]
fn long_socket_path_is_refused_naming_the_key() {
    let long = format!("/tmp/{}/s.sock", "x".repeat(120));
    let err = parse(&format!("[daemon]\nsocket = \"{long}\"\n")).expect_err("too long");
    assert!(err.to_string().contains("daemon.socket: path is"), "{err}");
}

#[test]
fn type_errors_name_the_key() {
    let err = parse("[scheduler]\ncapacity = \"one\"\n").expect_err("type error");
    assert!(err.to_string().contains("capacity"), "{err}");
}

fn secret_file(dir: &Path, mode: u32) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let p = dir.join("token");
    std::fs::write(&p, "ghp_x\n").unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
    p
}

#[test]
fn github_and_jenkins_sections_are_optional_and_parse() {
    let none = parse("").unwrap();
    assert_eq!((none.github, none.jenkins), (None, None));
    let dir = tempfile::tempdir().unwrap();
    let token = secret_file(dir.path(), 0o600);
    let text = format!(
        "[github]\nrepo = \"root-project/root\"\ntoken_file = \"{t}\"\nlabels_extra = [\"xl\"]\n\
         request_timeout = \"5s\"\n[jenkins]\nurl = \"https://j.example\"\nuser = \"bot\"\n\
         token_file = \"{t}\"\n[jenkins.nodes]\n\"h-SPI-VM-macOS-14\" = \"spi14\"\n",
        t = token.display()
    );
    let c = parse(&text).unwrap();
    let g = c.github.clone().unwrap();
    assert_eq!(g.repo.as_deref(), Some("root-project/root"));
    assert_eq!(g.labels_extra, ["xl"]);
    assert_eq!(g.request_timeout, Duration::from_secs(5));
    assert_eq!(g.jit_path, "/var/run/marble/jitconfig");
    let j = c.jenkins.clone().unwrap();
    assert_eq!(j.node_for("h-SPI-VM-macOS-14"), "spi14");
    assert_eq!(j.node_for("other"), "other");
    // What the test harness writes (toml::to_string of the config) parses back the same.
    assert_eq!(parse(&toml::to_string(&c).unwrap()).unwrap(), c);
}

#[test]
fn github_validation_names_each_key_and_never_takes_a_secret_inline() {
    let dir = tempfile::tempdir().unwrap();
    let open = secret_file(dir.path(), 0o644);
    let err = parse(&format!(
        "[github]\nrepo = \"root\"\ntoken_file = \"{}\"\nname_prefix = \"a b\"\n\
         labels_extra = [\"ok\", \"no;\"]\njit_path = \"tmp/x\"\ntoken = \"ghp_inline\"\n",
        open.display()
    ))
    .expect_err("invalid");
    let ConfigError::Invalid { problems, .. } = err else {
        panic!("wrong error {err:?}")
    };
    let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "github.token",
            "github.repo",
            "github.name_prefix",
            "github.labels_extra",
            "github.jit_path"
        ],
        "{problems:?}"
    );
    // A token file readable by others does not make the config invalid (the daemon
    // starts and waits for the file to be fixed); `check-config` still names it.
    let text = format!(
        "[github]\nrepo = \"o/r\"\ntoken_file = \"{}\"\n",
        open.display()
    );
    let config = parse(&text).expect("valid apart from the file's mode");
    let problems = config.secret_problems();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(problems[0].key, "github.token_file");
    assert!(problems[0].message.contains("chmod 600"), "{problems:?}");
    let missing = parse("[github]\nrepo = \"o/r\"\ntoken_file = \"/nonexistent/t\"\n")
        .expect("a missing file is not a config error");
    assert!(missing.secret_problems()[0].message.contains("cannot read"));
    let relative =
        parse("[github]\nrepo = \"o/r\"\ntoken_file = \"t\"\n").expect_err("a relative path is");
    assert!(
        relative.to_string().contains("must be an absolute path"),
        "{relative}"
    );
    let err = parse("[github]\norg = \"x\"\n").expect_err("no token");
    assert!(
        err.to_string()
            .contains("github.token_file: set github.token_file"),
        "{err}"
    );
    let err = parse("[jenkins]\nurl = \"ftp://x\"\n").expect_err("bad jenkins");
    let msg = err.to_string();
    for key in ["jenkins.url", "jenkins.user", "jenkins.token_file"] {
        assert!(msg.contains(key), "{key} missing: {msg}");
    }
}

#[test]
fn github_app_auth_replaces_the_token_and_names_its_keys() {
    let dir = tempfile::tempdir().unwrap();
    let key = secret_file(dir.path(), 0o600);
    let text = format!(
        "[github]\nrepo = \"o/r\"\napp_id = 123456\napp_key_file = \"{}\"\n",
        key.display()
    );
    let config = parse(&text).expect("App auth without a token is valid");
    let g = config.github.clone().unwrap();
    assert_eq!((g.app_id, g.installation_id), (Some(123_456), None));
    assert_eq!(g.app_key_file.as_deref(), Some(key.as_path()));
    assert!(config.secret_problems().is_empty());
    let with_installation = parse(&format!("{text}installation_id = 42\n")).unwrap();
    assert_eq!(with_installation.github.unwrap().installation_id, Some(42));
    // Both a token and an App: refused, naming the keys.
    let both = parse(&format!("{text}token_file = \"{}\"\n", key.display()))
        .expect_err("a token and an App");
    assert!(both.to_string().contains("github.app_id"), "{both}");
    assert!(both.to_string().contains("github.token_file"), "{both}");
    // Half an App: each missing key named.
    let no_key = parse("[github]\nrepo = \"o/r\"\napp_id = 1\n").expect_err("no key file");
    assert!(
        no_key.to_string().contains("github.app_key_file"),
        "{no_key}"
    );
    let no_id = parse(&format!(
        "[github]\nrepo = \"o/r\"\napp_key_file = \"{}\"\n",
        key.display()
    ))
    .expect_err("no app id");
    assert!(no_id.to_string().contains("github.app_id"), "{no_id}");
    let relative = parse("[github]\nrepo = \"o/r\"\napp_id = 1\napp_key_file = \"k.pem\"\n")
        .expect_err("relative key path");
    assert!(
        relative.to_string().contains("github.app_key_file"),
        "{relative}"
    );
    // The key file's mode is check-config's, as for a token file.
    let open = secret_file(dir.path(), 0o644);
    let config = parse(&format!(
        "[github]\nrepo = \"o/r\"\napp_id = 1\napp_key_file = \"{}\"\n",
        open.display()
    ))
    .expect("valid apart from the key file's mode");
    let problems = config.secret_problems();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(problems[0].key, "github.app_key_file");
    assert!(problems[0].message.contains("chmod 600"), "{problems:?}");
}

#[test]
fn bad_team_override_names_the_vm() {
    let err = parse("[teams.overrides]\n\"host-X\" = \"blue\"\n").expect_err("bad team");
    assert!(err.to_string().contains("teams.overrides.host-X"), "{err}");
}

#[test]
fn names_in_the_config_follow_the_shared_rule() {
    let err = parse("[teams.overrides]\n\"vm;rm -rf ~\" = \"root\"\n").expect_err("bad name");
    let msg = err.to_string();
    assert!(msg.contains("teams.overrides.vm;rm -rf ~"), "{msg}");
    assert!(msg.contains("only letters, digits"), "{msg}");
    let err = parse("[daemon]\nhost_name = \"mac'01\"\n").expect_err("bad host");
    assert!(err.to_string().contains("daemon.host_name"), "{err}");
}

#[test]
fn runner_keys_are_checked_with_their_names() {
    let dir = tempfile::tempdir().unwrap();
    let token = secret_file(dir.path(), 0o600);
    let err = parse(&format!(
        "[github]\nrepo = \"o/r\"\ntoken_file = \"{}\"\nrunner_version = \"2.328.9\"\n\
         runner_cache = \"cache\"\nrelease_check_interval = \"1m\"\n",
        token.display()
    ))
    .expect_err("invalid");
    let ConfigError::Invalid { problems, .. } = err else {
        panic!("wrong error {err:?}")
    };
    let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "github.runner_version",
            "github.runner_cache",
            "github.release_check_interval"
        ],
        "{problems:?}"
    );
    for ok in ["latest", "2.329.0", "3.0.0"] {
        let text = format!(
            "[github]\nrepo = \"o/r\"\ntoken_file = \"{}\"\nrunner_version = \"{ok}\"\n",
            token.display()
        );
        let config = parse(&text).unwrap_or_else(|e| panic!("{ok}: {e:?}"));
        assert_eq!(config.github.unwrap().runner_version, ok);
    }
}

#[test]
fn a_shared_demand_poller_needs_the_fleet_bucket_and_times_its_lease_from_the_interval() {
    let jenkins = "[jenkins]\nurl = \"https://jenkins.example\"\nuser = \"u\"\ntoken_file = \"/nonexistent\"\n";
    let err = parse(&format!(
        "{jenkins}[demand]\nshared = true\ngithub = false\n"
    ))
    .expect_err("no [fleet]");
    assert!(
        err.to_string().contains("demand.shared: needs a [fleet]"),
        "{err}"
    );
    let err = parse("[demand]\nsharde = true\n").expect_err("typo");
    assert!(err.to_string().contains("demand.sharde"), "{err}");
    let section = DemandSection {
        interval: Duration::from_secs(30),
        ..DemandSection::default()
    };
    let (duration, margin) = section.lease_timing_ms();
    assert_eq!((duration, margin), (45_000, 5_000));
    assert!(
        duration + margin < 2 * 30_000,
        "take-over within two intervals"
    );
}

//! `[jenkins]` end to end: the real daemon on a simulated host with a fake Jenkins
//! controller. An SPI VM whose guest probe says idle is still busy while Jenkins reports a
//! build on its node (`vm stop` → 75 naming the node and build); once the build ends it
//! stops. `drain` marks the SPI nodes temporarily offline (with the reason) and `resume`
//! clears the mark. The API token appears in no daemon log line.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod e2e_support;

use e2e_support::{SPI1, SimEnv, T, ctl, wait_power};
use marble_tests::fake_jenkins::FakeJenkins;
use marble_tests::harness::wait_until_blocking;
use marble_tests::prlsim::VmState;
use marbled::config::JenkinsSection;

const TOKEN: &str = "11jenkinsapitoken00ff";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jenkins_node_state_holds_stops_and_drain_takes_nodes_offline() {
    let jenkins = FakeJenkins::start(&["spi14"]).await;
    let mut env = SimEnv::new();
    let token_file = e2e_support::token_file(env.dir.path(), "jenkins-token", TOKEN);
    let mut section = JenkinsSection {
        url: jenkins.url.clone(),
        user: "marble-bot".into(),
        token_file: Some(token_file),
        ..JenkinsSection::default()
    };
    section.nodes.insert(SPI1.into(), "spi14".into());
    env.config.jenkins = Some(section);
    env.power_on(SPI1);
    let daemon = tokio::task::block_in_place(|| env.spawn());

    tokio::task::block_in_place(|| {
        wait_power(&daemon, SPI1, "running");
        jenkins.set_build("spi14", Some("https://jenkins.example/job/lcg/17/"));
        let refused = ctl(&daemon.socket, &["vm", "stop", SPI1]);
        assert_eq!(
            refused.code, 75,
            "a node with a running build is busy: {refused}"
        );
        assert!(
            refused.stderr.contains("spi14") && refused.stderr.contains("job/lcg/17"),
            "{refused}"
        );
        assert_eq!(env.sim_state(SPI1), VmState::Running);

        jenkins.set_build("spi14", None);
        let stopped = ctl(&daemon.socket, &["vm", "stop", SPI1]);
        assert_eq!(stopped.code, 0, "{stopped}");
        assert_eq!(env.sim_state(SPI1), VmState::Stopped);

        assert_eq!(
            ctl(&daemon.socket, &["drain", "--reason", "disk swap"]).code,
            0
        );
        let offline = wait_until_blocking(T, || {
            jenkins
                .offline("spi14")
                .is_some_and(|(off, msg)| off && msg.contains("disk swap"))
        });
        assert!(
            offline,
            "node not taken offline: {:?}",
            jenkins.offline("spi14")
        );
        assert_eq!(ctl(&daemon.socket, &["resume"]).code, 0);
        let online =
            wait_until_blocking(T, || jenkins.offline("spi14").is_some_and(|(off, _)| !off));
        assert!(online, "node still offline after resume");

        assert!(jenkins.requests().iter().all(|r| r.authorized));
        assert!(
            !daemon.log_text().contains(TOKEN),
            "the Jenkins API token appeared in the daemon log"
        );
    });
}

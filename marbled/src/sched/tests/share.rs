//! Fair share between ROOT jobs and Jenkins slot requests: weighted waits, the bound, and the
//! streak cap.

use super::support::*;

#[test]
fn fair_share_gives_the_freed_host_to_the_longer_weighted_wait() {
    // The ageing bound out of the way: the weights decide.
    let mut host = share_host(|c| c.fairness_bound_ms = 7_200_000);
    // S1 runs a Jenkins build; a mac14 job queues behind it.
    let first = host.command("jenkins", slot(S1, 0));
    host.settle();
    assert!(matches!(host.reply(first), Ok(Response::SlotGranted(_))));
    host.jobs.insert(S1.into(), "jenkins build".into());
    let queued_at = host.now;
    let snapshot = DemandSnapshot {
        root_jobs: vec![job(4, queued_at, "mac14")],
        ..Default::default()
    };
    host.feed(Input::Demand(snapshot.clone()));
    host.advance(20 * 60_000);
    // Twenty minutes later Jenkins asks for S2 and waits; then S1's build ends.
    let second = host.command("jenkins", slot(S2, 3_600_000));
    host.advance(60_000);
    host.jobs.remove(S1);
    host.advance(5 * 60_000);
    host.feed(Input::Demand(snapshot.clone()));
    host.settle();
    // ROOT waited 26 min × 1 against Jenkins' 6 min × 2: ROOT's turn.
    assert_eq!(host.running(), vec![M14.to_owned()], "{:?}", host.log);
    assert!(
        !host.replies.contains_key(&second),
        "Jenkins waits its turn"
    );
    let decisions = host.world.status(host.now).decisions;
    assert!(
        decisions
            .iter()
            .any(|d| d.text.contains("fair share: root goes")),
        "{decisions:?}"
    );
    // The job runs and ends; the queue is empty: Jenkins gets the host.
    host.jobs.insert(M14.into(), "Runner.Worker".into());
    host.feed(Input::Demand(DemandSnapshot::default()));
    host.advance(10 * 60_000);
    host.jobs.remove(M14);
    host.advance(5 * 60_000);
    assert!(
        matches!(host.reply(second), Ok(Response::SlotGranted(_))),
        "{:?}",
        host.reply(second)
    );
    assert_eq!(host.running(), vec![S2.to_owned()]);
}

#[test]
fn fair_share_weights_favour_jenkins_until_root_waits_age_past_the_bound() {
    let (host, asked) = contended(
        |c| {
            c.share_root = 0;
            c.max_hold_ms = 0;
        },
        60_000,
    );
    let turn = host.world.share_turn(asked + 60_000).expect("both wait");
    assert_eq!(turn.team, Team::Spi, "{}", turn.why);
    // Weight 0 delays ROOT but never starves it: once its job has waited fairness_bound it
    // goes first (Jenkins' request, a minute younger, has not yet).
    let later = asked + host.world.config.fairness_bound_ms - 60_000;
    let turn = host.world.share_turn(later).expect("both wait");
    assert_eq!(turn.team, Team::Root, "{}", turn.why);
    assert!(turn.why.contains("fairness_bound"), "{}", turn.why);
}

#[test]
fn fair_share_limits_how_long_one_team_keeps_the_host_while_the_other_waits() {
    let (mut host, asked) = contended(|c| c.max_hold_ms = 120_000, 0);
    let now = asked + 60_000;
    // Jenkins has the longer weighted wait…
    assert_eq!(host.world.share_turn(now).map(|t| t.team), Some(Team::Spi));
    // …and took the host twice in a row while ROOT waited, the first 90 s ago: within
    // max_hold it may go on.
    host.world.note_turn(now - 90_000, Team::Spi, true);
    host.world.note_turn(now - 10_000, Team::Spi, true);
    assert_eq!(host.world.share_turn(now).map(|t| t.team), Some(Team::Spi));
    // Two minutes after the first turn: ROOT's turn, however few turns that was.
    let later = now + 30_000;
    let turn = host.world.share_turn(later).expect("both wait");
    assert_eq!(turn.team, Team::Root, "{}", turn.why);
    assert!(turn.why.contains("2 turns in a row"), "{}", turn.why);
    // An uncontested turn ends the streak.
    host.world.note_turn(later, Team::Spi, false);
    assert_eq!(host.world.share_turn(later).map(|t| t.team), Some(Team::Spi));
}

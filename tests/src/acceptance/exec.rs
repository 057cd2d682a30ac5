//! Group `exec`: what `prlctl exec` does with argv, stdin, exit codes and concurrency, seen
//! through the daemon's own adapter (`Prlctl::exec`, the path every probe, delivery, scrub
//! and provisioning step takes) and, where the question is about Parallels itself, through
//! raw `prlctl exec` runs.
//!
//! Expectations are the real semantics (reference/prlctl.md §4): prlctl joins its arguments
//! with spaces and a guest shell parses the line, so the daemon must quote each argument;
//! `exec.argv-model` checks that model itself.

use std::time::{Duration, Instant};

use marbled::hypervisor::Hypervisor;
use serde_json::json;

use super::record::{Obs, Verdict};
use super::target::Env;
use super::vm::Throwaway;

/// Arguments that must arrive in the guest exactly as sent: spaces, both quotes, `$`,
/// backticks, `$(…)`, `;`, `|`, `&`, redirections, globs, an empty string, a tab,
/// backslashes and non-ASCII. (Newlines have their own check: one project reports prlctl
/// rejecting a backslash-newline.)
pub const ARGV_CASES: &[&str] = &[
    "plain",
    "two words",
    "it's",
    "say \"hi\"",
    "$HOME",
    "`id`",
    "$(id)",
    "a;b",
    "a|b&c>d<e",
    "*",
    "",
    "tab\there",
    "back\\slash",
    "ünï cödé",
];

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| (*s).to_owned()).collect()
}

/// `printf '%s\0' ARGS…` as an argv: prints each argument NUL-terminated.
pub fn printf_argv(args: &[&str]) -> Vec<String> {
    let mut argv = strings(&["printf", "%s\\0"]);
    argv.extend(args.iter().map(|s| (*s).to_owned()));
    argv
}

/// Split NUL-terminated `printf '%s\0'` output back into arguments.
pub fn split_nul(out: &str) -> Vec<String> {
    let mut parts: Vec<String> = out.split('\0').map(str::to_owned).collect();
    if parts.last().is_some_and(String::is_empty) {
        parts.pop();
    }
    parts
}

/// Compare what the guest printed with what was sent; `None` when equal, else the first
/// difference.
pub fn argv_difference(sent: &[&str], got: &[String]) -> Option<String> {
    for (i, s) in sent.iter().enumerate() {
        match got.get(i) {
            Some(g) if g == s => {}
            Some(g) => return Some(format!("argument {i}: sent {s:?}, guest saw {g:?}")),
            None => return Some(format!("argument {i} ({s:?}) missing; guest saw {got:?}")),
        }
    }
    (got.len() > sent.len()).then(|| format!("guest saw extra arguments: {got:?}"))
}

fn t(env: &Env) -> Duration {
    env.pick(Duration::from_secs(60), Duration::from_secs(10))
}

/// Every exec check that needs the VM running.
pub async fn running_checks(env: &Env, vm: &Throwaway) {
    let name = vm.name.as_str();

    env.rec
        .check("exec.sh-c", t(env), async |obs: &Obs| {
            let argv = strings(&["/bin/sh", "-c", "echo a b; exit 3"]);
            let out = env.prl.exec(name, &argv, None, t(env)).await?;
            obs.note("exec", json!({"argv": argv, "status": out.status, "stdout": out.stdout, "stderr": out.stderr}));
            Ok(if out.stdout == "a b\n" && out.status == 3 {
                Verdict::Pass("stdout \"a b\\n\", status 3".into())
            } else {
                Verdict::Fail(format!(
                    "expected stdout \"a b\\n\" and status 3, got {:?} and {}",
                    out.stdout, out.status
                ))
            })
        })
        .await;

    env.rec
        .check("exec.argv-model", t(env), async |obs: &Obs| {
            // Raw prlctl, arguments as separate words: if prlctl joins them and a guest shell
            // re-parses the line, `a b` splits and `$HOME` expands.
            let out = env
                .prlctl(obs, &["exec", name, "printf", "[%s]", "a b", "$HOME"], None, t(env))
                .await?;
            let text = out.stdout_text();
            obs.note("guest output", text.clone().into());
            Ok(if text.starts_with("[a][b][") && !text.contains("$HOME") && text.ends_with(']') {
                Verdict::Pass(format!("prlctl joins argv and a guest shell re-parses it: {text:?}"))
            } else if text == "[a b][$HOME]" {
                Verdict::Fail("prlctl keeps argv boundaries here: the daemon's quoting would add literal quotes; reference §4 is wrong for this PD version".into())
            } else {
                Verdict::Fail(format!("unexpected guest output {text:?} (exit {:?})", out.status))
            })
        })
        .await;

    env.rec
        .check("exec.argv", t(env), async |obs: &Obs| {
            let argv = printf_argv(ARGV_CASES);
            let out = env.prl.exec(name, &argv, None, t(env)).await?;
            let got = split_nul(&out.stdout);
            obs.note(
                "guest argv",
                json!({"sent": ARGV_CASES, "got": got, "status": out.status, "stderr": out.stderr}),
            );
            Ok(match argv_difference(ARGV_CASES, &got) {
                None if out.status == 0 => {
                    Verdict::Pass(format!("{} arguments arrived intact", ARGV_CASES.len()))
                }
                None => Verdict::Fail(format!("arguments intact but status {}", out.status)),
                Some(d) => Verdict::Fail(d),
            })
        })
        .await;

    env.rec
        .check("exec.argv-newline", t(env), async |obs: &Obs| {
            let sent = ["line 1\nline 2", "end\n"];
            let out = env
                .prl
                .exec(name, &printf_argv(&sent), None, t(env))
                .await?;
            let got = split_nul(&out.stdout);
            obs.note(
                "guest argv",
                json!({"sent": sent, "got": got, "status": out.status, "stderr": out.stderr}),
            );
            Ok(match argv_difference(&sent, &got) {
                None => Verdict::Pass("newlines inside arguments arrived intact".into()),
                Some(d) => Verdict::Fail(d),
            })
        })
        .await;

    env.rec
        .check("exec.stdin", t(env), async |obs: &Obs| {
            // 256 KiB of lines, like a script or a config on stdin (the output cap is 1 MiB).
            let payload: String = (0..4096)
                .map(|i| format!("{i:05} marble acceptance stdin line with some padding ....\n"))
                .collect();
            let started = Instant::now();
            let out = env
                .prl
                .exec(name, &strings(&["/bin/cat"]), Some(payload.as_bytes()), t(env))
                .await?;
            obs.note("round trip", json!({"sent_bytes": payload.len(), "got_bytes": out.stdout.len(), "status": out.status, "elapsed_ms": started.elapsed().as_millis() as u64}));
            Ok(if out.stdout == payload && out.status == 0 {
                Verdict::Pass(format!("{} bytes through cat in {:.1} s", payload.len(), started.elapsed().as_secs_f64()))
            } else {
                Verdict::Fail(format!(
                    "sent {} bytes, got {} back (status {})",
                    payload.len(),
                    out.stdout.len(),
                    out.status
                ))
            })
        })
        .await;

    env.rec
        .check("exec.stdin-closed", t(env), async |obs: &Obs| {
            // The daemon runs probes with stdin closed (/dev/null): a reader must see EOF at
            // once, and output written right away must not be lost (PD 26.4 lost early
            // output unless stdin stayed open).
            let cat = env
                .prl
                .exec(name, &strings(&["/bin/cat"]), None, t(env))
                .await?;
            obs.note(
                "cat with stdin closed",
                json!({"status": cat.status, "stdout": cat.stdout}),
            );
            let mut lost = 0;
            for i in 0..5 {
                let out = env
                    .prl
                    .exec(name, &strings(&["/bin/echo", "early"]), None, t(env))
                    .await?;
                obs.note(
                    "echo with stdin closed",
                    json!({"try": i, "status": out.status, "stdout": out.stdout}),
                );
                if out.stdout != "early\n" {
                    lost += 1;
                }
            }
            Ok(if cat.status == 0 && cat.stdout.is_empty() && lost == 0 {
                Verdict::Pass("cat saw EOF; echo's output arrived 5 of 5 times".into())
            } else {
                Verdict::Fail(format!(
                    "cat: status {} stdout {:?}; echo lost its output {lost} of 5 times",
                    cat.status, cat.stdout
                ))
            })
        })
        .await;

    env.rec
        .check(
            "exec.parallel",
            env.pick(Duration::from_secs(300), Duration::from_secs(60)),
            async |obs: &Obs| parallel(env, obs, name).await,
        )
        .await;

    env.rec
        .check("exec.guest-status", t(env), async |obs: &Obs| {
            let missing = env
                .prl
                .exec(name, &strings(&["/nonexistent/marble-acceptance"]), None, t(env))
                .await?;
            let s255 = env
                .prl
                .exec(name, &strings(&["/bin/sh", "-c", "exit 255"]), None, t(env))
                .await?;
            obs.note("statuses", json!({"missing_command": [missing.status, missing.stderr], "exit_255": [s255.status, s255.stderr]}));
            Ok(if missing.status == 127 && s255.status == 255 {
                Verdict::Pass("missing command: guest status 127; `exit 255`: guest status 255 (not an adapter error)".into())
            } else {
                Verdict::Fail(format!(
                    "missing command gave status {} ({}), `exit 255` gave {}",
                    missing.status,
                    missing.stderr.trim(),
                    s255.status
                ))
            })
        })
        .await;
}

/// `exec` against the stopped VM: prlctl's own exit code and message, and the adapter's
/// verdict (an error, not a guest status).
pub async fn not_running_check(env: &Env, vm: &Throwaway) {
    let name = vm.name.as_str();
    env.rec
        .check("exec.not-running", t(env), async |obs: &Obs| {
            let raw = env.prlctl(obs, &["exec", name, "/usr/bin/true"], None, t(env)).await?;
            let adapter = env.prl.exec(name, &strings(&["/usr/bin/true"]), None, t(env)).await;
            let stderr = raw.stderr_text();
            env.rec.fixture(
                "exec_not_started_stderr.txt",
                "prlctl exec VM /usr/bin/true (VM stopped)",
                &stderr,
            );
            Ok(match adapter {
                Err(e) if raw.status == Some(255) => Verdict::Pass(format!(
                    "prlctl exit 255, adapter error: {}",
                    marbled::chain::ErrorChain(&e)
                )),
                Err(e) => Verdict::Fail(format!(
                    "adapter error ({e}) but prlctl exited {:?}, not 255",
                    raw.status
                )),
                Ok(out) => Verdict::Fail(format!(
                    "the adapter took prlctl's failure for a guest status {} (stderr {:?}): is_prlctl_side_message misses it",
                    out.status,
                    stderr.trim()
                )),
            })
        })
        .await;
}

/// Raw `prlctl exec` runs at once, 1, 2, 4 and 8 of them, each `sleep 2; echo N`: how many
/// concurrent execs the VM takes and what they cost. Passes when 4 at once all answer
/// correctly; the 8 are a measurement for the per-VM exec cap.
async fn parallel(env: &Env, obs: &Obs, vm: &str) -> anyhow::Result<Verdict> {
    let mut summary = Vec::new();
    let mut four_ok = false;
    for level in [1usize, 2, 4, 8] {
        let started = Instant::now();
        let runs = (0..level).map(|i| {
            let line = format!("sleep 2; echo parallel-{i}");
            async move {
                let r = env.prlctl(obs, &["exec", vm, &line], None, t(env)).await;
                (i, r)
            }
        });
        let results = futures_util::future::join_all(runs).await;
        let wall = started.elapsed();
        let ok = results
            .iter()
            .filter(|(i, r)| {
                r.as_ref().is_ok_and(|o| {
                    o.status == Some(0) && o.stdout_text() == format!("parallel-{i}\n")
                })
            })
            .count();
        env.rec
            .timing(&format!("parallel_exec_{level}_wall_s"), wall);
        obs.note(
            "parallel level",
            json!({"level": level, "ok": ok, "wall_ms": wall.as_millis() as u64}),
        );
        summary.push(format!(
            "{level}: {ok}/{level} ok in {:.1} s",
            wall.as_secs_f64()
        ));
        if level == 4 {
            four_ok = ok == 4;
        }
    }
    let text = summary.join("; ");
    Ok(if four_ok {
        Verdict::Pass(text)
    } else {
        Verdict::Fail(format!("4 parallel execs did not all answer: {text}"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nul_split_and_difference() {
        assert_eq!(split_nul("a b\0\0c\0"), vec!["a b", "", "c"]);
        assert_eq!(
            argv_difference(&["a b", "", "c"], &split_nul("a b\0\0c\0")),
            None
        );
        assert!(argv_difference(&["a b"], &split_nul("a\0b\0")).is_some());
        assert!(argv_difference(&["a", "b"], &split_nul("a\0")).is_some());
    }
}

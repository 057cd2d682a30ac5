//! The guest shell behind `fake-prlctl exec`: `prlctl exec VM a b c` runs `sh -c "a b c"` in
//! the guest, and that shell behaves like POSIX `sh` — quoting, expansions, field splitting,
//! globbing against the guest filesystem, control flow, redirections, here-documents,
//! `sh -c`/`sh -s`, `printf` — with its processes in the guest process table.

use std::path::Path;

use marble_tests::prlsim::{PrlRun, SimHost};

fn exe() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_fake-prlctl"))
}

const VM: &str = "macphsft02-SPI-VM-macOS-15";

fn running() -> (tempfile::TempDir, SimHost) {
    let dir = tempfile::tempdir().expect("test helper");
    let host = SimHost::create(dir.path()).expect("test helper");
    host.add_running_vm(VM).expect("test helper");
    (dir, host)
}

/// `prlctl exec VM ARGS…` exactly as given.
fn exec(h: &SimHost, args: &[&str]) -> PrlRun {
    exec_in(h, args, None)
}

fn exec_in(h: &SimHost, args: &[&str], stdin: Option<&[u8]>) -> PrlRun {
    let mut all = vec!["exec", VM];
    all.extend_from_slice(args);
    h.prlctl(exe(), &all, stdin).expect("test helper")
}

/// One shell line (a single exec argument is the whole line the guest shell parses).
fn sh(h: &SimHost, line: &str) -> PrlRun {
    exec(h, &[line])
}

/// Stdout of a line that must succeed.
#[track_caller]
fn out(h: &SimHost, line: &str) -> String {
    let r = sh(h, line);
    assert_eq!(r.code, 0, "{line}: {r:?}");
    r.stdout
}

// Single-quote one argument for the guest shell: the daemon's own quoting.
use marbled::hypervisor::guest_cmd::quote as q;

#[test]
fn exec_joins_its_arguments_with_spaces_and_the_guest_shell_reparses_them() {
    let (_d, h) = running();
    // Two spaces inside one argument collapse: the guest splits the joined line again.
    assert_eq!(exec(&h, &["echo", "a  b"]).stdout, "a b\n");
    // The crabbox case: `/bin/sh -c SCRIPT` hands the inner shell only the script's first
    // word; the rest of the line runs in the outer shell.
    let r = exec(&h, &["/bin/sh", "-c", "echo one; echo two"]);
    assert_eq!((r.code, r.stdout.as_str()), (0, "\ntwo\n"));
    // `set` alone lists the variables; `-eu` became $0; `false` does not stop the outer shell.
    let r = exec(&h, &["/bin/sh", "-c", "set -eu\nfalse\necho still-running"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        r.stdout.contains("PATH='/usr/bin:/bin:/usr/sbin:/sbin'\n"),
        "{r:?}"
    );
    assert!(r.stdout.ends_with("still-running\n"), "{r:?}");
    // Quoted per argument, the same argv arrives intact.
    let r = exec(&h, &[&q("/bin/sh"), &q("-c"), &q("echo one; echo two")]);
    assert_eq!(r.stdout, "one\ntwo\n");
    let r = exec(
        &h,
        &[
            &q("/bin/sh"),
            &q("-c"),
            &q("set -eu\nfalse\necho not-reached"),
        ],
    );
    assert_eq!((r.code, r.stdout.as_str()), (1, ""));
    // Options before the command stay prlctl's.
    let r = exec(&h, &["--current-user", "id", "-un"]);
    assert_eq!(r.stdout, "admin\n");
}

#[test]
fn quoting_follows_posix_sh() {
    let (_d, h) = running();
    let line =
        r#"printf '[%s]' 'a b' "c\"d" e\ f '$HOME' "$HOME" \$y 'it'\''s' "a\b" '' "" x"y"'z'"#;
    assert_eq!(
        out(&h, line),
        r#"[a b][c"d][e f][$HOME][/var/root][$y][it's][a\b][][][xyz]"#
    );
    // A backslash-newline joins lines; inside single quotes it stays.
    assert_eq!(out(&h, "echo a\\\nb 'c\\\nd'"), "ab c\\\nd\n");
    assert_eq!(out(&h, "printf '%s' $'tab\\there'"), "tab\there");
}

#[test]
fn parameters_and_special_parameters() {
    let (_d, h) = running();
    assert_eq!(
        out(&h, "x=hello; y=${x}world; echo $x $y ${#y}"),
        "hello helloworld 10\n"
    );
    assert_eq!(
        out(
            &h,
            "echo ${unset:-dflt} ${unset-d2} ${e:=assigned} $e ${x:+alt} [${unset:+alt}]"
        ),
        "dflt d2 assigned assigned []\n"
    );
    assert_eq!(
        out(
            &h,
            "p=/a/b/c.tar.gz; echo ${p#*/} ${p##*/} ${p%.*} ${p%%.*}"
        ),
        "a/b/c.tar.gz c.tar.gz /a/b/c.tar /a/b/c\n"
    );
    let r = sh(&h, "echo ${nope:?must be set}; echo not-reached");
    assert_eq!((r.code, r.stderr.as_str()), (1, "sh: nope: must be set\n"));
    // $0, $#, $@, "$@", $*, $1.., ${10}, $?, $$ through `sh -c SCRIPT ARG0 ARGS…`.
    let script =
        r#"printf '%s|' "$0" "$#" "$@"; printf '<%s>' $*; printf '{%s}' "$*" "$1" "${10}""#;
    let line = format!("/bin/sh -c {} zero a 'b  c' 3 4 5 6 7 8 9 ten", q(script));
    assert_eq!(
        out(&h, &line),
        "zero|10|a|b  c|3|4|5|6|7|8|9|ten|<a><b><c><3><4><5><6><7><8><9><ten>{a b  c 3 4 5 6 7 8 9 ten}{a}{ten}"
    );
    assert_eq!(out(&h, "false; echo $?; true; echo $?"), "1\n0\n");
    let r = out(&h, "echo $$; sh -c 'echo $$ $PPID'");
    let pids: Vec<&str> = r.split_whitespace().collect();
    assert_eq!(pids.len(), 3, "{r}");
    assert_ne!(pids[0], pids[1], "a child shell has its own pid");
    assert_eq!(pids[0], pids[2], "and its parent is the session shell");
    // Subshells keep $$.
    let r = out(&h, "echo $$ $(echo $$) `echo $$`");
    let v: Vec<&str> = r.split_whitespace().collect();
    assert!(v[0] == v[1] && v[1] == v[2], "{r}");
    // Exported variables reach children, plain ones do not; `VAR=x cmd` is temporary.
    assert_eq!(
        out(
            &h,
            "A=1; export B=2; C=3 sh -c 'echo [$A][$B][$C]'; echo [$C]"
        ),
        "[][2][3]\n[]\n"
    );
}

#[test]
fn command_substitution_strips_trailing_newlines_and_sets_status() {
    let (_d, h) = running();
    assert_eq!(out(&h, "x=$(printf 'a\\n\\n\\n'); echo \"[$x]\""), "[a]\n");
    assert_eq!(
        out(&h, "echo `echo back` $(echo $(echo nested))"),
        "back nested\n"
    );
    assert_eq!(out(&h, "x=$(false); echo $?"), "1\n");
    assert_eq!(out(&h, "x=$(exit 7) || echo failed $?"), "failed 7\n");
    assert_eq!(
        out(&h, "echo \"$(echo 'a   b')\" $(echo 'a   b')"),
        "a   b a b\n"
    );
    // A command substitution runs in a subshell: assignments do not leak.
    assert_eq!(out(&h, "x=1; y=$(x=2; echo $x); echo $x $y"), "1 2\n");
}

#[test]
fn field_splitting_on_ifs() {
    let (_d, h) = running();
    assert_eq!(out(&h, "x='  a  b   c '; printf '[%s]' $x"), "[a][b][c]");
    assert_eq!(out(&h, "x='  a  b '; printf '[%s]' \"$x\""), "[  a  b ]");
    assert_eq!(out(&h, "IFS=:; x=a::b:; printf '[%s]' $x"), "[a][][b]");
    assert_eq!(out(&h, "e=''; printf '[%s]' $e \"$e\" x"), "[][x]");
    assert_eq!(
        out(&h, "set -- 'a b' c; printf '[%s]' \"$@\" $@"),
        "[a b][c][a][b][c]"
    );
    assert_eq!(out(&h, "set --; printf '[%s]' \"$@\"; echo"), "[]\n");
}

#[test]
fn globbing_matches_guest_files_and_leaves_unmatched_patterns_alone() {
    let (_d, h) = running();
    for f in [
        "/tmp/g/b.txt",
        "/tmp/g/a.txt",
        "/tmp/g/c.log",
        "/tmp/g/.hidden.txt",
    ] {
        h.write_guest_file(VM, f, b"x", 0o644).unwrap();
    }
    assert_eq!(out(&h, "echo /tmp/g/*.txt"), "/tmp/g/a.txt /tmp/g/b.txt\n");
    assert_eq!(out(&h, "cd /tmp/g && echo *"), "a.txt b.txt c.log\n");
    assert_eq!(
        out(&h, "cd /tmp/g && echo ?.log [ab].txt .h*"),
        "c.log a.txt b.txt .hidden.txt\n"
    );
    assert_eq!(
        out(&h, "echo /tmp/g/*.none '/tmp/g/*.txt' \"*\""),
        "/tmp/g/*.none /tmp/g/*.txt *\n"
    );
    assert_eq!(
        out(&h, "x='/tmp/g/*.log'; echo $x \"$x\""),
        "/tmp/g/c.log /tmp/g/*.log\n"
    );
    assert_eq!(out(&h, "set -f; echo /tmp/g/*.txt"), "/tmp/g/*.txt\n");
    assert_eq!(out(&h, "echo /tmp/*/c.log"), "/tmp/g/c.log\n");
}

#[test]
fn set_e_set_u_set_dashdash_and_shift() {
    let (_d, h) = running();
    let r = sh(&h, "set -e; echo a; false; echo b");
    assert_eq!((r.code, r.stdout.as_str()), (1, "a\n"));
    // Conditions, `&&`/`||` heads and `!` do not trigger set -e.
    assert_eq!(
        out(
            &h,
            "set -e; if false; then :; fi; false || true; false && true; ! true; echo survived"
        ),
        "survived\n"
    );
    let r = sh(&h, "set -u; echo $missing; echo b");
    assert_eq!(
        (r.code, r.stderr.as_str()),
        (127, "sh: missing: unbound variable\n")
    );
    assert_eq!(out(&h, "set -u; echo ${missing:-ok}"), "ok\n");
    assert_eq!(
        out(&h, "set -- x y z; shift; echo $# $1; shift 2; echo $#"),
        "2 y\n0\n"
    );
    let r = sh(&h, "set -- a; shift 3");
    assert_eq!(
        (r.code, r.stderr.as_str()),
        (1, "sh: shift: 3: shift count out of range\n")
    );
    assert_eq!(out(&h, "set -o pipefail; false | true; echo $?"), "1\n");
}

#[test]
fn compound_commands_and_lists() {
    let (_d, h) = running();
    assert_eq!(
        out(
            &h,
            "for v in 1 2 3; do if [ $v = 1 ]; then echo one; elif [ $v = 2 ]; then echo two; else echo other; fi; done"
        ),
        "one\ntwo\nother\n"
    );
    assert_eq!(
        out(
            &h,
            "i=0; while [ $i -lt 3 ]; do i=$((i + 1)); done; echo $i"
        ),
        "3\n"
    );
    assert_eq!(
        out(
            &h,
            "i=5; until [ $i -le 2 ]; do i=$((i - 1)); done; echo $i"
        ),
        "2\n"
    );
    assert_eq!(
        out(
            &h,
            "for w in a.jar b.txt c; do case $w in *.jar|*.war) echo jar;; *.txt) echo text;; *) echo other;; esac; done"
        ),
        "jar\ntext\nother\n"
    );
    assert_eq!(out(&h, "! false && echo negated"), "negated\n");
    assert_eq!(out(&h, "{ echo a; echo b; } | wc -l"), "       2\n");
    assert_eq!(out(&h, "x=1; (x=2; echo $x); echo $x"), "2\n1\n");
    assert_eq!(
        out(&h, "true && echo y || echo n; false && echo y || echo n"),
        "y\nn\n"
    );
    assert_eq!(out(&h, "echo a; echo b\necho c"), "a\nb\nc\n");
    assert_eq!(
        out(
            &h,
            "for i in 1 2 3 4; do [ $i = 2 ] && continue; [ $i = 4 ] && break; echo $i; done"
        ),
        "1\n3\n"
    );
    assert_eq!(
        out(
            &h,
            "greet() { local who=$1; echo \"hi $who ($#)\"; return 3; }; greet a b; echo $? [$who]"
        ),
        "hi a (2)\n3 []\n"
    );
    assert_eq!(
        out(&h, "printf 'b\\na\\nb\\n' | sort | uniq | tr a-z A-Z"),
        "A\nB\n"
    );
    assert_eq!(
        out(&h, "echo $((2 + 3 * 4)) $((10 % 3)) $(( (1 + 2) << 2 ))"),
        "14 1 12\n"
    );
}

#[test]
fn redirections_and_here_documents() {
    let (_d, h) = running();
    assert_eq!(
        out(
            &h,
            "mkdir -p /tmp/r && echo a > /tmp/r/f && echo b >> /tmp/r/f && cat < /tmp/r/f"
        ),
        "a\nb\n"
    );
    let r = sh(&h, "ls /nope 2>/dev/null; echo status $?");
    assert_eq!((r.stdout.as_str(), r.stderr.as_str()), ("status 1\n", ""));
    // `>f 2>&1` sends both to f; `2>&1 >f` sends stderr to the old stdout.
    let r = sh(
        &h,
        "{ echo out; echo err >&2; } > /tmp/r/both 2>&1; cat /tmp/r/both",
    );
    assert_eq!(r.stdout, "out\nerr\n");
    let r = sh(&h, "{ echo out; echo err >&2; } 2>&1 > /tmp/r/only-out");
    assert_eq!((r.stdout.as_str(), r.stderr.as_str()), ("err\n", ""));
    assert_eq!(out(&h, "cat /tmp/r/only-out"), "out\n");
    let r = sh(&h, "echo x > /no/such/dir/f");
    assert_eq!(
        (r.code, r.stderr.as_str()),
        (1, "sh: /no/such/dir/f: No such file or directory\n")
    );
    assert_eq!(
        out(
            &h,
            "v=exp; cat <<EOF\nline $v\n\\$v `echo bq`\nEOF\necho after"
        ),
        "line exp\n$v bq\nafter\n"
    );
    assert_eq!(out(&h, "cat <<'EOF'\nline $v\nEOF"), "line $v\n");
    assert_eq!(out(&h, "cat <<-EOF\n\t\tindented\n\tEOF"), "indented\n");
    assert_eq!(
        out(&h, "exec 3>/tmp/r/fd3; echo via3 >&3; cat /tmp/r/fd3"),
        "via3\n"
    );
}

#[test]
fn sh_s_reads_its_script_from_stdin_and_children_share_it() {
    let (_d, h) = running();
    let script = b"echo \"$# $1\"\necho second\n";
    let r = exec_in(&h, &["/bin/sh", "-s", "--", "x", &q("y z")], Some(script));
    assert_eq!(r.stdout, "2 x\nsecond\n");
    let r = exec_in(&h, &["/bin/sh", "-s", "--", "x", "y z"], Some(script));
    assert_eq!(
        r.stdout, "3 x\nsecond\n",
        "unquoted, `y z` is two arguments"
    );
    // A child reading stdin swallows the rest of the script; with </dev/null it does not.
    let script = b"echo first\ncat\necho never-run\n";
    let r = exec_in(&h, &["/bin/sh", "-s"], Some(script));
    assert_eq!(r.stdout, "first\necho never-run\n");
    let script = b"echo first\ncat </dev/null\necho third\n";
    let r = exec_in(&h, &["/bin/sh", "-s"], Some(script));
    assert_eq!(r.stdout, "first\nthird\n");
    // `read` takes one line of the script's remainder.
    let r = exec_in(
        &h,
        &["/bin/sh", "-s"],
        Some(b"read line\nthis is data\necho \"[$line]\"\n"),
    );
    assert_eq!(r.stdout, "[this is data]\n");
    // A syntax error stops the script there, after what ran before.
    let r = exec_in(&h, &["/bin/sh", "-s"], Some(b"echo ok\nif then\necho no\n"));
    assert_eq!((r.code, r.stdout.as_str()), (2, "ok\n"));
    assert_eq!(
        r.stderr,
        "sh: line 2: syntax error near unexpected token `then'\n"
    );
}

#[test]
fn printf_formats_and_repeats() {
    let (_d, h) = running();
    let r = sh(&h, "printf '%s\\0' 'a b' '' c");
    assert_eq!(r.stdout.as_bytes(), b"a b\0\0c\0");
    assert_eq!(out(&h, "printf '%d-%s;' 1 a 2 b 3"), "1-a;2-b;3-;");
    assert_eq!(
        out(&h, "printf '%5.2f|%-4d|%04x|%%|%c\\n' 3.14159 7 255 zeta"),
        " 3.14|7   |00ff|%|z\n"
    );
    assert_eq!(out(&h, "printf '%b' 'x\\ty\\n'"), "x\ty\n");
    let r = sh(&h, "printf '%d\\n' abc");
    assert_eq!(
        (r.code, r.stdout.as_str(), r.stderr.as_str()),
        (1, "0\n", "printf: abc: invalid number\n")
    );
}

#[test]
fn unknown_commands_wrong_paths_and_syntax_errors() {
    let (_d, h) = running();
    let r = sh(&h, "brew install x");
    assert_eq!(
        (r.code, r.stderr.as_str()),
        (127, "sh: brew: command not found\n")
    );
    // macOS has pgrep in /usr/bin only.
    let r = sh(&h, "/bin/pgrep -f x");
    assert_eq!(
        (r.code, r.stderr.as_str()),
        (127, "sh: /bin/pgrep: No such file or directory\n")
    );
    let r = sh(&h, "echo a; do");
    assert_eq!((r.code, r.stdout.as_str()), (2, ""));
    assert_eq!(
        r.stderr,
        "sh: -c: line 1: syntax error near unexpected token `do'\n"
    );
    let r = sh(&h, "echo 'unterminated");
    assert_eq!(r.code, 2);
    // A guest script file runs with sh.
    h.write_guest_file(
        VM,
        "/usr/local/bin/hello",
        b"#!/bin/sh\necho \"hello $1\"\n",
        0o755,
    )
    .unwrap();
    assert_eq!(
        out(
            &h,
            "/usr/local/bin/hello you; PATH=$PATH:/usr/local/bin hello again"
        ),
        "hello you\nhello again\n"
    );
    h.write_guest_file(VM, "/usr/local/bin/noexec", b"echo x\n", 0o644)
        .unwrap();
    assert_eq!(sh(&h, "/usr/local/bin/noexec").code, 126);
}

#[test]
fn file_utilities_keep_bsd_behaviour_and_guest_ownership() {
    let (_d, h) = running();
    let r = sh(
        &h,
        "umask 077 && mkdir -p /var/run/m && cat > /var/run/m/f && stat -f '%Lp %Su %Sg' /var/run/m/f /var/run/m",
    );
    assert_eq!(r.stdout, "600 root wheel\n700 root wheel\n", "{r:?}");
    assert_eq!(
        out(
            &h,
            "chown sftnight:staff /var/run/m/f && chmod 644 /var/run/m/f && stat -f '%Lp %Su:%Sg %z %N' /var/run/m/f"
        ),
        "644 sftnight:staff 0 /var/run/m/f\n"
    );
    let r = sh(&h, "stat -c %a /var/run/m/f");
    assert_eq!(r.code, 1);
    assert!(r.stderr.starts_with("stat: illegal option -- c\n"), "{r:?}");
    let r = sh(&h, "stat -f %Su /nope");
    assert_eq!(
        (r.code, r.stderr.as_str()),
        (1, "stat: /nope: stat: No such file or directory\n")
    );
    // Files a non-root user creates are theirs.
    let r = sh(
        &h,
        "mkdir -p /Users/sftnight && chown sftnight /Users/sftnight && sudo -u sftnight -H -- /bin/sh -c 'echo hi > ~/f; id -un; stat -f %Su ~/f'",
    );
    assert_eq!(r.stdout, "sftnight\nsftnight\n", "{r:?}");
    let t = out(&h, "mkdir -p /tmp && mktemp");
    assert!(
        t.starts_with("/tmp/tmp.") && t.trim_end().len() == "/tmp/tmp.".len() + 8,
        "{t}"
    );
    assert_eq!(out(&h, &format!("stat -f %Lp {}", t.trim())), "600\n");
    assert_eq!(
        out(
            &h,
            "mkdir -p /opt/a && echo x > /opt/a/f && mv /opt/a/f /opt/a/g && ln -sfn /opt/a/g /opt/a/link && cat /opt/a/link && readlink /opt/a/link && ls /opt/a"
        ),
        "x\n/opt/a/g\ng\nlink\n"
    );
    assert_eq!(
        out(&h, "rm -rfv /opt/a/link /opt/a/none; ls /opt/a"),
        "/opt/a/link\ng\n"
    );
    assert_eq!(
        sh(&h, "rm /opt/a/none").stderr,
        "rm: /opt/a/none: No such file or directory\n"
    );
    assert_eq!(sh(&h, "rm /opt/a").stderr, "rm: /opt/a: is a directory\n");
}

#[test]
fn a_script_that_never_ends_hangs_like_a_real_exec() {
    let (_d, h) = running();
    for (i, line) in [
        "while :; do :; done",
        "until [ -f /never ]; do sleep 2; done",
    ]
    .iter()
    .enumerate()
    {
        let mut child = std::process::Command::new(exe())
            .args(["exec", VM, line])
            .env(marble_tests::prlsim::DIR_ENV, h.dir())
            .stdin(std::process::Stdio::null())
            .spawn()
            .expect("spawn");
        // The invocation log gets `exit: null` when a hang starts.
        let hung = h
            .wait_for(std::time::Duration::from_secs(60), |_| {
                h.invocations()
                    .is_ok_and(|inv| inv.iter().filter(|v| v.exit.is_none()).count() > i)
            })
            .expect("wait");
        let _ = child.kill();
        let _ = child.wait();
        assert!(hung, "{line} should hang");
    }
}

#[test]
fn find_tests_type_mode_and_owner_and_chown_takes_numeric_ids() {
    let (_d, h) = running();
    // The daemon's JIT check: `chown 0:0` (root:wheel by id), then a find on mode and owner.
    out(
        &h,
        "umask 077 && mkdir -p /var/run/m && : > /var/run/m/c && chmod 600 /var/run/m/c",
    );
    out(&h, "chown 0:0 /var/run/m/c");
    assert_eq!(
        out(&h, "stat -f '%Lp %Su:%Sg' /var/run/m/c"),
        "600 root:wheel\n"
    );
    let check = "find /var/run/m/c -prune -type f -perm 600 -user root";
    assert_eq!(out(&h, check), "/var/run/m/c\n");
    // Wrong mode, wrong owner or a directory: no output, exit 0 (find's own status).
    out(&h, "chmod 644 /var/run/m/c");
    assert_eq!(out(&h, check), "");
    out(&h, "chmod 600 /var/run/m/c && chown 501:20 /var/run/m/c");
    assert_eq!(out(&h, check), "");
    assert_eq!(out(&h, "find /var/run/m -prune -type f"), "");
    // Descends unless pruned; an unknown primary and a missing path fail as BSD find does.
    assert_eq!(out(&h, "find /var/run/m -type f"), "/var/run/m/c\n");
    let r = sh(&h, "find /var/run/m -newer x");
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stderr.contains("-newer: unknown primary or operator"),
        "{r:?}"
    );
    let r = sh(&h, "find /nowhere -type f");
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stderr.contains("/nowhere: No such file or directory"),
        "{r:?}"
    );
}

#[test]
fn nohup_runs_its_utility_and_without_one_is_a_usage_error() {
    let (_d, h) = running();
    assert_eq!(
        out(
            &h,
            "nohup /bin/echo a b >/tmp/n.log 2>&1 </dev/null; cat /tmp/n.log"
        ),
        "a b\n"
    );
    let r = sh(&h, "nohup");
    assert_eq!(r.code, 127, "{r:?}");
    assert!(r.stderr.contains("usage: nohup"), "{r:?}");
}

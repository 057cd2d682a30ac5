//! The guest command line of `prlctl exec`: how an argv the daemon means becomes the one
//! string the guest's shell parses back into exactly that argv.
//!
//! Real `prlctl exec VM a b c` does not keep argv boundaries: it joins its arguments with
//! spaces and the guest re-parses the string with a shell (`reference/prlctl.md` §4; on a
//! macOS 26 guest `/bin/sh -lc "<script>"` ran `/bin/sh -lc set` with the rest of the script
//! in the outer shell). So every word is single-quoted here ([`quote`], a `'` becomes
//! `'\''`) and the words are joined with spaces ([`command_line`]); [`crate::hypervisor::Prlctl`]
//! passes that one line as the single command argument, which the guest shell turns back
//! into the caller's argv whatever it holds (spaces, quotes, `$`, backticks, `;`, globs,
//! newlines, empty words, non-ASCII). The [`crate::hypervisor::Hypervisor`] seam keeps taking
//! an argv; only the prlctl adapter knows about the line.
//!
//! Lines longer than [`MAX_ARGV_LINE`] do not go in argv at all (an argv over ~3.9 KB makes
//! `prlctl exec` hang for good, PD 26.4): [`long_line_on_stdin`] turns them into a script
//! for `/bin/sh -s`. Scripts of several lines written by the daemon go the same way
//! ([`stdin_script`]), wrapped in a `{ …; } </dev/null` group: the guest shell reads the
//! whole group before running any of it, and no command in it can read (swallow) the rest
//! of the script from the shared stdin.
//!
//! [`glob_word`] is the one place where a caller wants the guest shell to expand something:
//! `*` and `?` stay active, every other character is quoted.

/// Longest guest command line sent as an argument of `prlctl exec`. PD 26.4 hangs above
/// ~3.9 KB of total argv and another project saw rejections above ~3 KB; 2 KiB leaves room
/// for the VM name and prlctl's own words.
pub const MAX_ARGV_LINE: usize = 2048;

/// The guest program that reads a script on stdin.
pub const STDIN_SHELL: [&str; 2] = ["/bin/sh", "-s"];

/// `word` as one single-quoted shell word: the shell reads it back byte for byte (inside
/// single quotes nothing is special; a `'` ends the quote, is added escaped, and a new quote
/// starts).
pub fn quote(word: &str) -> String {
    let mut out = String::with_capacity(word.len() + 2);
    out.push('\'');
    for c in word.chars() {
        if c == '\'' {
            out.push_str("'\\''");
        } else {
            out.push(c);
        }
    }
    out.push('\'');
    out
}

/// The command line a POSIX shell parses into exactly `argv`: every argument quoted with
/// [`quote`], joined with single spaces. An empty `argv` gives an empty line (the shell runs
/// nothing); callers always pass a command.
pub fn command_line<S: AsRef<str>>(argv: &[S]) -> String {
    argv.iter()
        .map(|a| quote(a.as_ref()))
        .collect::<Vec<_>>()
        .join(" ")
}

/// `pattern` as a shell word in which only `*` and `?` are wildcards: every other character
/// (spaces, `$`, `;`, quotes, `[`…) is quoted, so a configured glob can select files but never
/// become shell code. The shell leaves a pattern that matches nothing as it is (literally).
pub fn glob_word(pattern: &str) -> String {
    let mut out = String::with_capacity(pattern.len() + 4);
    let mut literal = String::new();
    for c in pattern.chars() {
        if matches!(c, '*' | '?') {
            if !literal.is_empty() {
                out.push_str(&quote(&literal));
                literal.clear();
            }
            out.push(c);
        } else {
            literal.push(c);
        }
    }
    if !literal.is_empty() || out.is_empty() {
        out.push_str(&quote(&literal));
    }
    out
}

/// `["/bin/sh", "-c", script]`: a one-line script run by the guest's shell. Positional
/// parameters after it (`$0`, `$1`…) can be appended by the caller, which keeps data (paths,
/// names) out of the script text.
pub fn sh_c(script: &str) -> Vec<String> {
    vec!["/bin/sh".to_owned(), "-c".to_owned(), script.to_owned()]
}

/// Stdin bytes for [`STDIN_SHELL`] that run `script` with stdin closed: `{`, the script,
/// `} </dev/null`. The shell parses the whole group before running it, so a child that reads
/// stdin (ssh, brew, a `read`) gets end-of-file instead of the rest of the script, and a script
/// cut short in transit is a syntax error that runs nothing.
pub fn stdin_script(script: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(script.len() + 16);
    out.extend_from_slice(b"{\n");
    out.extend_from_slice(script);
    out.extend_from_slice(b"\n} </dev/null\n");
    out
}

/// A command line too long for argv, as a script on stdin for [`STDIN_SHELL`]: the line
/// itself with its stdin redirected from `/dev/null` (what it would have had in argv, where
/// the caller sent no stdin). The line is only quoted words, so the redirection applies to its
/// one command.
pub fn long_line_on_stdin(line: &str) -> Vec<u8> {
    format!("{line} </dev/null\n").into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::process::Command;

    /// Shells to check the quoting against: this machine's `/bin/sh` always; bash too when
    /// present, because macOS's `/bin/sh` is bash in POSIX mode.
    fn shells() -> Vec<&'static str> {
        ["/bin/sh", "/bin/bash"]
            .into_iter()
            .filter(|s| std::path::Path::new(s).exists())
            .collect()
    }

    /// What `shell -c LINE` prints, where LINE is `printf '%s\0' ARGS…` built by
    /// [`command_line`]: the argv the shell parsed, NUL-separated.
    fn parsed_by(shell: &str, args: &[String]) -> Vec<String> {
        let mut argv = vec!["printf".to_owned(), "%s\\0".to_owned()];
        argv.extend(args.iter().cloned());
        let out = Command::new(shell)
            .arg("-c")
            .arg(command_line(&argv))
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .output()
            .expect("run the shell");
        assert!(out.status.success(), "{shell}: {out:?}");
        let text = String::from_utf8(out.stdout).expect("utf-8 back");
        let mut words: Vec<String> = text.split('\0').map(str::to_owned).collect();
        assert_eq!(words.pop().as_deref(), Some(""), "output ends with a NUL");
        words
    }

    /// One argument: the characters a shell treats specially, plus plain and non-ASCII ones.
    fn arg() -> impl Strategy<Value = String> {
        let special = prop::sample::select(vec![
            ' ', '\'', '"', '$', '`', ';', '*', '\n', '\t', '\\', '|', '&', '<', '>', '(', ')',
            '#', '~', '{', '}', '!', '?', '[', ']', '=', '%', 'é', '日', '🦀', 'a', 'Z', '0', '-',
            '/', '.',
        ]);
        prop::collection::vec(special, 0..12).prop_map(|cs| cs.into_iter().collect())
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

        /// The one property the daemon relies on: whatever the argv, the guest shell parses
        /// the line back into exactly that argv.
        #[test]
        fn the_real_shell_parses_the_line_back_into_the_argv(
            args in prop::collection::vec(arg(), 1..6)
        ) {
            for shell in shells() {
                prop_assert_eq!(parsed_by(shell, &args), args.clone(), "shell {}", shell);
            }
        }
    }

    #[test]
    fn each_class_of_special_argument_round_trips() {
        let args: Vec<String> = [
            "two words",
            "it's",
            "say \"hi\"",
            "$HOME",
            "`id`",
            "$(id)",
            "a; rm -rf /",
            "*",
            "line\nbreak",
            "",
            "naïve 日本 🦀",
            "'",
            "''",
            "\\",
            "--",
            "-c",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        for shell in shells() {
            assert_eq!(parsed_by(shell, &args), args, "{shell}");
        }
    }

    /// The bug this module exists for: `prlctl exec` joined the argv with spaces, unquoted,
    /// and the guest shell re-split it. Every class of special argument comes back wrong
    /// (an `END` word after it shows an argument that vanished or split).
    #[test]
    fn a_plain_space_join_loses_every_class_of_argument() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("a-file"), b"").expect("file for * to match");
        for arg in [
            "two words",
            "it's",
            "say \"hi\"",
            "$HOME",
            "`id`",
            "a;b",
            "*",
            "x\ny",
            "",
            "é ü",
        ] {
            let joined = format!("printf '%s\\0' {arg} END");
            let out = Command::new("/bin/sh")
                .arg("-c")
                .arg(&joined)
                .current_dir(dir.path())
                .env("HOME", "/nonexistent-home")
                .output()
                .expect("sh");
            let text = String::from_utf8_lossy(&out.stdout);
            assert_ne!(
                text,
                format!("{arg}\0END\0"),
                "{arg:?} survived a plain join"
            );
            let both = [arg.to_owned(), "END".to_owned()];
            assert_eq!(parsed_by("/bin/sh", &both), both);
        }
    }

    #[test]
    fn quoting_is_plain_single_quotes() {
        assert_eq!(quote("abc"), "'abc'");
        assert_eq!(quote(""), "''");
        assert_eq!(quote("it's"), "'it'\\''s'");
        assert_eq!(
            command_line(&["/usr/bin/stat", "-f", "%Lp %Su"]),
            "'/usr/bin/stat' '-f' '%Lp %Su'"
        );
        assert_eq!(command_line::<&str>(&[]), "");
    }

    #[test]
    fn glob_words_keep_only_star_and_question_mark_active() {
        assert_eq!(glob_word("/Users/*/.PAT"), "'/Users/'*'/.PAT'");
        assert_eq!(glob_word("*"), "*");
        assert_eq!(glob_word(""), "''");
        let dir = tempfile::tempdir().expect("tempdir");
        for name in ["a b", "c$d", "x;y", "plain", "[q]"] {
            std::fs::create_dir_all(dir.path().join(name).join("sub")).expect("mkdir");
            std::fs::write(dir.path().join(name).join("sub/.PAT"), b"t").expect("plant");
        }
        let root = dir.path().display().to_string();
        let pattern = format!("{root}/*/sub/.P?T");
        let script = format!(
            "for f in {} {}; do printf '%s\\n' \"$f\"; done",
            glob_word(&pattern),
            glob_word(&format!("{root}/none; touch {root}/pwned */x"))
        );
        let out = Command::new("/bin/sh")
            .arg("-c")
            .arg(&script)
            .output()
            .expect("sh");
        let text = String::from_utf8(out.stdout).expect("utf-8");
        let mut got: Vec<&str> = text.lines().collect();
        got.sort_unstable();
        let mut want: Vec<String> = ["[q]", "a b", "c$d", "plain", "x;y"]
            .iter()
            .map(|n| format!("{root}/{n}/sub/.PAT"))
            .collect();
        // The second pattern matches nothing and stays as written, inert.
        want.push(format!("{root}/none; touch {root}/pwned */x"));
        want.sort_unstable();
        assert_eq!(got, want);
        assert!(
            !dir.path().join("pwned").exists(),
            "a glob became shell code"
        );
    }

    #[test]
    fn a_stdin_script_cannot_be_swallowed_by_a_child_reading_stdin() {
        // `cat` would print the rest of the script if it shared the shell's stdin.
        let script = b"cat\necho after-cat\nexit 7";
        let mut child = Command::new("/bin/sh")
            .arg("-s")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("sh -s");
        {
            use std::io::Write;
            let mut stdin = child.stdin.take().expect("piped");
            stdin.write_all(&stdin_script(script)).expect("write");
        }
        let out = child.wait_with_output().expect("wait");
        assert_eq!(String::from_utf8_lossy(&out.stdout), "after-cat\n");
        assert_eq!(out.status.code(), Some(7));
    }

    #[test]
    fn a_long_line_runs_the_same_from_stdin() {
        let big = "x".repeat(3 * MAX_ARGV_LINE);
        let line = command_line(&["printf", "%s|%s", big.as_str(), "it's"]);
        assert!(line.len() > MAX_ARGV_LINE);
        let mut child = Command::new(STDIN_SHELL[0])
            .arg(STDIN_SHELL[1])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("sh -s");
        {
            use std::io::Write;
            let mut stdin = child.stdin.take().expect("piped");
            stdin.write_all(&long_line_on_stdin(&line)).expect("write");
        }
        let out = child.wait_with_output().expect("wait");
        assert!(out.status.success());
        assert_eq!(String::from_utf8_lossy(&out.stdout), format!("{big}|it's"));
    }
}

//! Names that enter MARBLE from a person, and commands MARBLE shows a person to copy.
//!
//! One rule for every name that creates something or becomes part of a command, a path or an
//! object key — a new VM's name (`vm create`, `image pull --as`), the host name VM names are
//! built from, the VM names of `[teams] overrides` — checked where it enters (the request's
//! [`crate::Request::validate`] at the daemon's door, the config's validation): [`name_problem`].
//! Names of VMs that already exist are not refused (Parallels allows any name, and refusing
//! one would lock its operator out); wherever any name is shown inside a command to copy,
//! the command goes through [`shell_command`], which single-quotes every word that needs it.

/// Longest accepted name, in bytes (the `vm create` limit: a macOS local host name).
pub const NAME_MAX_LEN: usize = 63;

/// Why `name` cannot be used as a name (`what` says which, e.g. "VM name"), or `None`.
///
/// The rule: 1 to [`NAME_MAX_LEN`] bytes of ASCII letters, digits, `.`, `_` and `-`, not
/// starting with `-` (it would read as an option) or `.` (a hidden file, `..`).
pub fn name_problem(what: &str, name: &str) -> Option<String> {
    if name.is_empty() || name.len() > NAME_MAX_LEN {
        return Some(format!(
            "{what} {name:?} must be 1 to {NAME_MAX_LEN} characters"
        ));
    }
    if name.starts_with(['-', '.']) {
        return Some(format!("{what} {name:?} must not start with '-' or '.'"));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Some(format!(
            "{what} {name:?} contains {c:?}; only letters, digits, '.', '_' and '-' are allowed"
        ));
    }
    None
}

/// `word` as one POSIX shell word: as is when it holds only characters no shell treats
/// specially, else in single quotes (each `'` written as `'\''`).
pub fn shell_word(word: &str) -> String {
    let plain = !word.is_empty()
        && word.bytes().all(|b| {
            b.is_ascii_alphanumeric()
                || matches!(
                    b,
                    b'-' | b'_' | b'.' | b'/' | b':' | b'@' | b'%' | b'+' | b'=' | b','
                )
        });
    if plain {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', "'\\''"))
    }
}

/// The command line `words` as a person can paste it into a shell: each word through
/// [`shell_word`], joined by spaces.
pub fn shell_command(words: &[&str]) -> String {
    words
        .iter()
        .map(|w| shell_word(w))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_refused_with_the_reason() {
        assert_eq!(name_problem("VM name", "macphsft01-ROOT-VM-macOS-15"), None);
        for (bad, why) in [
            ("", "1 to 63"),
            ("-rf", "start with"),
            ("..", "start with"),
            ("a'b", "'\\''"),
            ("a;b", "';'"),
            ("a>b", "'>'"),
            ("a b", "' '"),
            ("a/b", "'/'"),
        ] {
            let problem = name_problem("VM name", bad).expect(bad);
            assert!(problem.contains(why), "{bad:?}: {problem}");
        }
        assert!(name_problem("VM name", &"x".repeat(64)).is_some());
    }

    #[test]
    fn commands_are_quoted_word_by_word() {
        assert_eq!(
            shell_command(&[
                "prlctl",
                "exec",
                "vm-1",
                "scutil",
                "--set",
                "ComputerName",
                "vm-1"
            ]),
            "prlctl exec vm-1 scutil --set ComputerName vm-1"
        );
        assert_eq!(
            shell_command(&["marblectl", "vm", "stop", "it's; rm -rf ~ >x"]),
            "marblectl vm stop 'it'\\''s; rm -rf ~ >x'"
        );
        assert_eq!(shell_word(""), "''");
        assert_eq!(shell_word("/Users/a b/x"), "'/Users/a b/x'");
    }

    /// What the shell makes of a quoted command is the words it was made of.
    #[test]
    fn the_shell_reads_back_the_words() {
        let words = [
            "printf", "%s\\n", "it's", "a b", "$HOME", "`x`", "\"q\"", "", "--x",
        ];
        let out = std::process::Command::new("/bin/sh")
            .arg("-c")
            .arg(shell_command(&words))
            .output()
            .expect("sh");
        let text = String::from_utf8(out.stdout).expect("utf8");
        let got: Vec<&str> = text.split('\n').collect();
        assert_eq!(&got[..words.len() - 2], &words[2..]);
    }
}

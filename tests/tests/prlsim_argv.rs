//! `prlctl exec` argv round trip through the shell-faithful simulator: any argv, each element
//! single-quoted (`'` → `'\''`) and passed after `printf '%s\0'`, arrives in the guest as
//! exactly that argv (property test). Appended unquoted — what the daemon did before — it does
//! not, for every class of troublesome character (table test).

use std::path::Path;

use marble_tests::prlsim::{PrlRun, SimHost};
use proptest::prelude::*;

fn exe() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_fake-prlctl"))
}

const VM: &str = "macphsft01-ROOT-VM-macOS-14";

fn running() -> (tempfile::TempDir, SimHost) {
    let dir = tempfile::tempdir().expect("test helper");
    let host = SimHost::create(dir.path()).expect("test helper");
    host.add_running_vm(VM).expect("test helper");
    (dir, host)
}

// Single-quote one argument for the guest shell: the daemon's own quoting.
use marbled::hypervisor::guest_cmd::quote as q;

/// `prlctl exec VM printf '%s\0' ARGS…` with `args` as given; the NUL-separated fields.
fn printf_exec(h: &SimHost, args: &[String]) -> (PrlRun, Vec<String>) {
    let mut all = vec!["exec".to_owned(), VM.to_owned(), q("printf"), q("%s\\0")];
    all.extend(args.iter().cloned());
    let refs: Vec<&str> = all.iter().map(String::as_str).collect();
    let r = h.prlctl(exe(), &refs, None).expect("test helper");
    let mut fields: Vec<String> = r.stdout.split('\0').map(str::to_owned).collect();
    // printf ends every field with NUL: the text after the last one is empty.
    if fields.last().is_some_and(String::is_empty) {
        fields.pop();
    }
    (r, fields)
}

fn quoted(argv: &[String]) -> Vec<String> {
    argv.iter().map(|a| q(a)).collect()
}

/// Characters that mean something to a shell, plus plain and non-ASCII ones.
fn element() -> impl Strategy<Value = String> {
    let chars = prop::sample::select(vec![
        'a', 'Z', '0', '_', '-', '.', '/', ' ', ' ', '\t', '\n', '\'', '\'', '"', '"', '$', '`',
        '\\', ';', '&', '|', '*', '?', '[', ']', '{', '}', '(', ')', '<', '>', '#', '~', '!', '=',
        '%', 'é', '日', '🦀',
    ]);
    prop::collection::vec(chars, 0..10).prop_map(|v| v.into_iter().collect())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn quoted_argv_arrives_exactly(argv in prop::collection::vec(element(), 1..6)) {
        let (_d, h) = running();
        let (r, fields) = printf_exec(&h, &quoted(&argv));
        prop_assert_eq!(r.code, 0, "{:?}", r);
        prop_assert_eq!(fields, argv);
    }
}

#[test]
fn unquoted_argv_breaks_for_every_class() {
    let (_d, h) = running();
    h.write_guest_file(VM, "/tmp/star/x", b"", 0o644).unwrap();
    let cases: &[(&str, &[&str])] = &[
        ("space", &["a b"]),
        ("tab", &["a\tb"]),
        ("single quote", &["it's"]),
        ("double quote", &["say \"hi\""]),
        ("dollar", &["$HOME"]),
        ("backtick", &["`id -u`"]),
        ("semicolon", &["a;echo injected"]),
        ("pipe", &["a|wc"]),
        ("ampersand", &["a&&echo injected"]),
        ("star", &["/tmp/star/*"]),
        ("question mark", &["/tmp/sta?"]),
        ("newline", &["a\nb"]),
        ("empty string", &["", "x"]),
        ("backslash", &["a\\b"]),
        ("redirect", &["a>/tmp/out"]),
        ("hash", &["a #b"]),
        ("parentheses", &["(a)"]),
        ("tilde", &["~"]),
        ("non-ASCII with a space", &["日本 語"]),
    ];
    for (class, argv) in cases {
        let argv: Vec<String> = argv.iter().map(|a| (*a).to_owned()).collect();
        let (_, good) = printf_exec(&h, &quoted(&argv));
        assert_eq!(good, argv, "{class}: quoted must round-trip");
        let (r, bad) = printf_exec(&h, &argv);
        assert!(
            bad != argv || r.code != 0,
            "{class}: unquoted {argv:?} round-tripped: {r:?}"
        );
    }
    // Non-ASCII text without shell metacharacters passes either way: the guest shell does
    // not split or reinterpret it.
    let plain = vec!["日本語🦀".to_owned()];
    assert_eq!(printf_exec(&h, &plain).1, plain);
}

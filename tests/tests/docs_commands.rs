//! House rule "every documented command exists and works": every command line of README.md
//! and docs/**/*.md for `marblectl`, `marbled`, `marble-sim`, `scripts/*.sh` and `cargo -p`
//! parses with the real CLI definitions (`marble_tests::docs_commands`), and the check fails,
//! naming file, line and clap's error, on planted wrong examples.

use std::path::{Path, PathBuf};

use marble_tests::docs_commands::{Program, check, check_repo, extract};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_owned()
}

/// The failures of a planted document, as `check_repo` would print them.
fn failures(doc: &str) -> Vec<String> {
    extract("docs/PLANTED.md", doc)
        .iter()
        .filter_map(|c| {
            check(c, &repo())
                .err()
                .map(|e| format!("{}: {e}", c.location()))
        })
        .collect()
}

#[test]
fn every_documented_command_parses() {
    let (count, failures) = check_repo(&repo());
    assert!(
        count > 200,
        "only {count} commands found: is the extractor broken?"
    );
    assert!(
        failures.is_empty(),
        "{} of {count} documented commands do not parse:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn a_wrong_subcommand_in_a_code_block_fails_with_file_line_and_clap_error() {
    let doc = "# T\n\n```sh\nmarblectl status\nmarblectl vm lst   # typo\n```\n";
    let f = failures(doc);
    assert_eq!(f.len(), 1, "{f:?}");
    assert!(
        f[0].starts_with("docs/PLANTED.md:5: `marblectl vm lst`"),
        "{}",
        f[0]
    );
    assert!(f[0].contains("unrecognized subcommand 'lst'"), "{}", f[0]);
}

#[test]
fn a_wrong_flag_inline_or_in_a_block_fails() {
    let doc = "Run `marblectl status --jsn` or\n\n```sh\ntarget/debug/marble-sim run t.toml --polcy demand\n```\n\
               and `marbled check` then `scripts/demo.sh --nope`.\n";
    let f = failures(doc);
    assert_eq!(f.len(), 4, "{f:?}");
    assert!(
        f[0].starts_with("docs/PLANTED.md:1:") && f[0].contains("'--jsn'"),
        "{}",
        f[0]
    );
    assert!(
        f[1].starts_with("docs/PLANTED.md:4:") && f[1].contains("'--polcy'"),
        "{}",
        f[1]
    );
    assert!(f[2].contains("unrecognized subcommand 'check'"), "{}", f[2]);
    assert!(f[3].contains("does not know `--nope`"), "{}", f[3]);
    // A script named in prose must exist, even without arguments.
    let f = failures("partitioned by `scripts/no-such.sh`.\n");
    assert_eq!(f.len(), 1, "{f:?}");
    assert!(f[0].contains("No such file"), "{}", f[0]);
}

#[test]
fn a_code_block_must_give_required_arguments_but_inline_code_may_name_the_command() {
    assert!(failures("`marblectl lock` and `marblectl --timeout`\n").is_empty());
    let f = failures("```sh\nmarblectl lock\n```\n");
    assert_eq!(f.len(), 1, "{f:?}");
    assert!(f[0].contains("required"), "{}", f[0]);
    // A missing value is only tolerated at the end of an inline span.
    assert_eq!(failures("`marblectl --timeout status`\n").len(), 1);
    assert_eq!(failures("```sh\nmarblectl --timeout\n```\n").len(), 1);
}

#[test]
fn placeholders_are_substituted() {
    let doc = "`marblectl request-slot <vm>`, `marblectl vm create NAME --ipsw FILE --team root|spi [--cpus N] [--memory MB]`,\n\
               `marblectl lock VM --reason …`, `marble-sim replay-all --set scheduler.x=…`\n\n\
               ```sh\nexport MARBLE_SOCKET=/tmp/x.sock\nsudo target/debug/marblectl --socket \"$SOCK\" status\n\
               $ marblectl events --follow --json | head -1     # NDJSON\n\
               target/release/marble-sim replay-all [DIR] [--seeds 3] [--first-seed 1001] [--json] \\\n  --strict\n\
               for t in docs/traces/*.toml; do target/debug/marble-sim compare $t; done\n\
               MARBLE_SIM_SCHEDULES=20000 cargo test -p marble-sim --test sim_properties -- --ignored\n\
               cargo run -p marble-sim -- run docs/traces/cycle-mixed.toml --json 2>&1 > out.txt\n```\n";
    let cmds = extract("docs/PLANTED.md", doc);
    let texts: Vec<&str> = cmds.iter().map(|c| c.text.as_str()).collect();
    assert_eq!(cmds.len(), 10, "{texts:?}");
    assert_eq!(cmds[4].line, 6, "{texts:?}");
    assert_eq!(cmds[4].program, Program::Marblectl);
    assert_eq!(cmds[5].line, 7, "{texts:?}");
    assert!(
        cmds[6].args.contains(&"--strict".to_owned()),
        "{:?}",
        cmds[6]
    );
    assert_eq!(cmds[6].line, 8);
    assert_eq!(cmds[8].program, Program::Cargo);
    let f = failures(doc);
    assert!(f.is_empty(), "{f:?}");
}

#[test]
fn enum_placeholders_spans_across_lines_and_quoted_output() {
    // `--shape NAME` takes one of the shapes; `--seed N` a number.
    assert!(failures("`marble-sim generate --shape NAME [--seed N]`\n").is_empty());
    // Quoted messages and output are not commands.
    let prose = "exits 64 (`marble-sim replay-all: --set\nscheduler.x: unknown key`), e.g.\n\
                 `marblectl 0.1.0 (commit abc1234, protocol 1.5)`.\n";
    assert!(extract("docs/PLANTED.md", prose).is_empty());
    // A span broken over two lines is one command, named by the line it starts on.
    let f = failures("Then run `marblectl vm\nlst` and\n`marblectl status`.\n");
    assert_eq!(f.len(), 1, "{f:?}");
    assert!(
        f[0].starts_with("docs/PLANTED.md:1: `marblectl vm lst`"),
        "{}",
        f[0]
    );
}

#[test]
fn cargo_packages_binaries_and_test_targets_must_exist() {
    let doc = "```sh\ncargo test -p marble-sim --test no_such_test\ncargo build -p marble-simulator\n\
               cargo run --bin marble-sim -- replay-al\ncargo build --bin marbled\n```\n";
    let f = failures(doc);
    assert_eq!(f.len(), 3, "{f:?}");
    assert!(f[0].contains("no test target `no_such_test`"), "{}", f[0]);
    assert!(f[1].contains("no package `marble-simulator`"), "{}", f[1]);
    assert!(f[2].contains("'replay-al'"), "{}", f[2]);
}

#[test]
fn marblectl_commands_written_without_the_program_are_checked() {
    let doc = "`vm stop VM [--force]`, `request-slot VM [--wait D]`, `vm list --json`, \
               `lock --all-except VM`; prose: `host idle`, `vm = \"any\"`, `fleet heartbeat written`.\n\
               Wrong: `vm stop VM --forse` and `image ls --tem root`.\n";
    let cmds = extract("docs/PLANTED.md", doc);
    assert_eq!(cmds.len(), 6, "{cmds:?}");
    let f = failures(doc);
    assert_eq!(f.len(), 2, "{f:?}");
    assert!(
        f[0].starts_with("docs/PLANTED.md:2: `marblectl vm stop VM --forse`"),
        "{}",
        f[0]
    );
    assert!(f[1].contains("'--tem'"), "{}", f[1]);
}

#[test]
fn a_shell_variable_naming_the_program_is_followed() {
    let doc = "```sh\nmarblectl=\"${MARBLECTL:-/usr/local/bin/marblectl}\"\n\
               \"$marblectl\" request-slot \"$vm\" --wait \"$wait\" >&2\n\
               \"$marblectl\" request-slot \"$vm\" --wiat \"$wait\" >&2\n```\n";
    let cmds = extract("docs/PLANTED.md", doc);
    assert_eq!(cmds.len(), 2, "{cmds:?}");
    let f = failures(doc);
    assert_eq!(f.len(), 1, "{f:?}");
    assert!(
        f[0].starts_with("docs/PLANTED.md:4:") && f[0].contains("'--wiat'"),
        "{}",
        f[0]
    );
}

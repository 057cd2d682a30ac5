//! `docs/marbled.example.toml` is exactly what `marbled print-default-config` prints, so the
//! documented config cannot drift. Regenerate with `MARBLE_BLESS=1 cargo test -p marbled
//! --test example_config`.

use std::path::{Path, PathBuf};

use marbled::Config;

fn example_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/marbled.example.toml")
}

#[test]
fn example_config_matches_the_defaults() {
    let expected = Config::default_toml();
    let path = example_path();
    if std::env::var_os("MARBLE_BLESS").is_some() {
        std::fs::write(&path, &expected).expect("write example config");
    }
    let actual = std::fs::read_to_string(&path).expect("docs/marbled.example.toml exists");
    assert_eq!(
        actual, expected,
        "docs/marbled.example.toml is stale; run MARBLE_BLESS=1 cargo test -p marbled --test example_config"
    );
}

#[test]
fn example_config_is_valid() {
    Config::load(Path::new(&example_path())).expect("the example config loads and validates");
}

//! Runner labels: the ones a ROOT VM's runner offers (derived from its name, so the
//! inventory adapter can attach them to each observed VM) and GitHub's rule for whether a
//! runner's labels cover a job's `runs-on`.

/// Whether a job's labels are all among a runner's (case-insensitive; GitHub's rule).
pub fn labels_cover(runner: &[String], job: &[String]) -> bool {
    !job.is_empty()
        && job
            .iter()
            .all(|j| runner.iter().any(|r| r.eq_ignore_ascii_case(j)))
}

/// The runner labels a ROOT VM offers, from the `macOS-NN` in its name (the seed's naming):
/// `self-hosted`, `macOS`, `ARM64`, `macNN`. Empty when the name carries no version.
pub fn runner_labels(name: &str) -> Vec<String> {
    let lower = name.to_ascii_lowercase();
    let Some(pos) = lower.find("macos-") else {
        return Vec::new();
    };
    let digits: String = lower[pos + 6..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    if digits.is_empty() {
        return Vec::new();
    }
    vec![
        "self-hosted".to_owned(),
        "macOS".to_owned(),
        "ARM64".to_owned(),
        format!("mac{digits}"),
    ]
}

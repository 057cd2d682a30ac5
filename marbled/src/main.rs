//! The `marbled` binary: everything lives in `marbled::cli` so the test harness runs the same
//! entry point.
fn main() -> std::process::ExitCode {
    #[cfg(marble_wip)]
    return marbled::cli::main();
    #[cfg(not(marble_wip))]
    std::process::ExitCode::FAILURE
}

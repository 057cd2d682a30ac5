//! The `marbled` binary: everything lives in `marbled::cli` so the test harness runs the same
//! entry point.
fn main() -> std::process::ExitCode {
    marbled::cli::main()
}

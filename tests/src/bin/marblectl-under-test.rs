//! The CLI binary for process-level tests: the same entry point as the shipped `marblectl`.
fn main() -> std::process::ExitCode {
    marblectl::main()
}

//! The daemon binary for process-level tests: the same entry point as the shipped `marbled`.
fn main() -> std::process::ExitCode {
    marbled::cli::main()
}

//! `fake-prlctl`: the prlctl simulator executable (see `marble_tests::prlsim`). State lives
//! in the directory named by `MARBLE_PRLSIM_DIR`.

fn main() {
    std::process::exit(marble_tests::prlsim::prlctl::fake_main());
}

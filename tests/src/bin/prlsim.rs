//! `prlsim`: script a simulated Parallels host by hand (see `marble_tests::prlsim::ctl`).

fn main() {
    std::process::exit(marble_tests::prlsim::ctl::main());
}

//! Records the git commit this crate is built from as `MARBLE_COMMIT` (`--version` prints it):
//! `git rev-parse --short HEAD`, plus `-dirty` when tracked files differ from it, or
//! `unknown` outside a git checkout (a build from the release tarball). `MARBLE_COMMIT` set in
//! the environment wins (a packager who knows the commit). `marblectl/build.rs` is the same (both include `build-support/commit.rs`).
//!
//! It reruns when HEAD or the branch it names moves, not on every edit: watching the index
//! would rebuild the daemon and everything above it on each `git add`. So `-dirty` says
//! whether the tree was dirty when the commit last changed.

include!("../build-support/commit.rs");

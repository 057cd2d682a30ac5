#!/usr/bin/env bash
# The macOS cross-check: `cargo check` of every crate of the workspace (all targets, default
# features: the S3 and CI clients with their C dependencies aws-lc-sys and zstd-sys) for
# aarch64-apple-darwin, with zig as the C cross compiler (cargo-zigbuild), plus marbled
# without its optional features. Nothing is linked, so no macOS SDK or framework is needed.
# Installs its tools on first use (scripts/install-cross-tools.sh, pinned, into .tools/).
# Exit status: 0 checked; 3 the darwin std target cannot be installed (nothing checked);
# anything else: a tool install or the check failed.
set -euo pipefail
cd "$(dirname "$0")/.."
set +e
path_line="$(./scripts/install-cross-tools.sh | tail -n 1)"
rc=$?
set -e
[ "$rc" -eq 0 ] || exit "$rc"
export PATH="${path_line#PATH=}"
target=aarch64-apple-darwin
# `cargo-zigbuild check` (not `cargo zigbuild check`: as a cargo subcommand it only builds)
# is `cargo check` with zig set as the target's C compiler, C++ compiler and archiver.
cargo-zigbuild check --locked --target "$target" --workspace --all-targets
cargo-zigbuild check --locked --target "$target" -p marbled --no-default-features --lib --bins
echo "darwin cross-check: every crate, all targets, default features, and marbled --no-default-features checked for $target"

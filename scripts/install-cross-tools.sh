#!/usr/bin/env bash
# Install the macOS cross-check tools, pinned, into <repo>/.tools:
#   zig (the `ziglang` package from PyPI: a C compiler that ships macOS libc headers)
#     -> .tools/ziglang-$ZIG_VERSION/ziglang/zig
#   cargo-zigbuild (crates.io: runs cargo with zig as the C compiler for the target)
#     -> .tools/bin/cargo-zigbuild
# and the Rust standard library for aarch64-apple-darwin (rustup).
# Idempotent: does nothing for what is already there. Prints the PATH to use on its last
# line (`PATH=…`), which scripts/check-darwin.sh reads.
# Exit status: 0 ok; 3 the darwin std target cannot be installed (rustup unreachable);
# anything else: an install failed.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
root="$repo/.tools"
zig_version=0.15.2
zigbuild_version=0.24.1
zig_dir="$root/ziglang-$zig_version"
mkdir -p "$root/bin"

if ! rustup target list --installed 2>/dev/null | grep -qx aarch64-apple-darwin; then
  if ! rustup target add aarch64-apple-darwin >&2; then
    echo "cannot install the aarch64-apple-darwin std target with rustup" >&2
    exit 3
  fi
fi

if ! [ -x "$zig_dir/ziglang/zig" ] || [ "$("$zig_dir/ziglang/zig" version 2>/dev/null)" != "$zig_version" ]; then
  rm -rf "$zig_dir"
  # --target: a private directory, no virtualenv, nothing outside .tools.
  python3 -m pip install --quiet --disable-pip-version-check --no-deps \
    --target "$zig_dir" "ziglang==$zig_version" >&2
fi

if ! "$root/bin/cargo-zigbuild" --version 2>/dev/null | grep -q " $zigbuild_version\$"; then
  # A private target dir so the build tree never touches the workspace's target/.
  build="$(mktemp -d "${TMPDIR:-/tmp}/cargo-zigbuild-build.XXXXXX")"
  trap 'rm -rf "$build"' EXIT
  CARGO_TARGET_DIR="$build" cargo install cargo-zigbuild --version "$zigbuild_version" \
    --locked --root "$root" >&2
fi

echo "zig $("$zig_dir/ziglang/zig" version), $("$root/bin/cargo-zigbuild" --version)" >&2
echo "PATH=$zig_dir/ziglang:$root/bin:$PATH"

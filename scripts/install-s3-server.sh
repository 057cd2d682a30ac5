#!/usr/bin/env bash
# Install the S3-compatible test server (s3s-fs, pinned) into <repo>/.tools/bin.
# Pinned to 0.14.1: newer releases need a newer rustc than the workspace toolchain
# (see ../shared/reference/s3.md §1.2). Idempotent: does nothing when the binary is there.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
root="$repo/.tools"
bin="$root/bin/s3s-fs"
version=0.14.1
if [ -x "$bin" ] && "$bin" --version 2>/dev/null | grep -q "$version"; then
  echo "s3s-fs $version already installed at $bin"
  exit 0
fi
mkdir -p "$root"
# A private target dir so the 385 MB build tree can be deleted afterwards and never touches
# the workspace's shared target/.
build="$(mktemp -d "${TMPDIR:-/tmp}/s3s-fs-build.XXXXXX")"
trap 'rm -rf "$build"' EXIT
CARGO_TARGET_DIR="$build" cargo install s3s-fs --version "$version" --features binary --locked --root "$root"
echo "installed $("$bin" --version 2>/dev/null || echo s3s-fs) at $bin"

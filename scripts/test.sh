#!/usr/bin/env bash
# Runs every test of the workspace — the README's test command.
# Installs the local S3 server the image tests need (s3s-fs, pinned) if it is missing, so this
# works on a fresh Linux or macOS machine with only a Rust toolchain.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-s3-server.sh
export MARBLE_REQUIRE_S3=1
exec cargo test --workspace --locked "$@"

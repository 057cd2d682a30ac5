#!/bin/sh
# Build and install from a source tarball. $1: URL; $2: build commands (run with sh -c in the
# unpacked directory).
set -eu
tmp=$(mktemp -d /tmp/marble-src.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
curl -fsSL --retry 3 -o "$tmp/src.tgz" "$1"
tar -xzf "$tmp/src.tgz" -C "$tmp"
cd "$(find "$tmp" -mindepth 1 -maxdepth 1 -type d | head -1)"
sh -c "$2"

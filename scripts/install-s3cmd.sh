#!/usr/bin/env bash
# Install s3cmd (PyPI) into a private venv under <repo>/.tools/s3cmd-venv, for the image
# benchmark's baseline (scripts/bench-images.sh). Idempotent. Not needed by the tests.
#   scripts/install-s3cmd.sh          → prints the s3cmd path on the last line
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
venv="$repo/.tools/s3cmd-venv"
version="${S3CMD_VERSION:-2.4.0}"
if [ -x "$venv/bin/s3cmd" ] && "$venv/bin/s3cmd" --version 2>/dev/null | grep -q "$version"; then
  echo "s3cmd $version already installed"
else
  mkdir -p "$repo/.tools"
  python3 -m venv "$venv"
  "$venv/bin/pip" -q install "s3cmd==$version"
  echo "installed $("$venv/bin/s3cmd" --version)"
fi
echo "$venv/bin/s3cmd"

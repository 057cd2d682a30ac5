#!/usr/bin/env bash
# Optional fidelity check: the image round trip (push / ls / verify / pull / rm, and a legacy
# seed zip) against Garage over HTTPS. Garage is a strict S3 implementation that, like Ceph
# RGW, rejects encodings lenient servers (s3s-fs) accept, and it enforces its region.
#
#   scripts/s3-garage.sh            run it (Garage must be installed: .tools/bin or PATH)
#   scripts/s3-garage.sh --install  install Garage first if missing (cargo install from
#                                   crates.io, pinned; ~20 min and 1.4 GB RAM on 2 cores)
#
# It starts a single-node Garage on free loopback ports in a temp dir (region "garage"),
# imports a throw-away key, creates a bucket, and runs tests/tests/images_garage.rs, which
# puts a TLS front with a private CA before Garage's S3 port: MARBLE talks https with
# `ca_file`, as production does. Everything is stopped and removed on exit.
#
# Not part of .ci/run: building Garage takes far longer than a CI run should spend on it.
# Exit status: 0 passed; 1 the test or the setup failed; 4 Garage is not installed (run with
# --install); 5 Garage could not be installed from crates.io.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
version=2.5.0
install=0
case "${1:-}" in
"") ;;
--install) install=1 ;;
*) echo "usage: $0 [--install]" >&2; exit 2 ;;
esac

find_garage() {
  if [ -x "$repo/.tools/bin/garage" ]; then echo "$repo/.tools/bin/garage"; else command -v garage || true; fi
}
bin="$(find_garage)"
if [ -z "$bin" ]; then
  if [ "$install" -eq 0 ]; then
    echo "GARAGE NOT INSTALLED: run scripts/s3-garage.sh --install" >&2
    echo "(cargo install garage --version $version --locked, from crates.io, into .tools/bin)" >&2
    exit 4
  fi
  build="$(mktemp -d "${TMPDIR:-/tmp}/garage-build.XXXXXX")"
  echo "installing garage $version from crates.io (takes ~20 min on 2 cores)..." >&2
  if ! CARGO_TARGET_DIR="$build" nice cargo install garage --version "$version" --locked \
      --root "$repo/.tools" >&2; then
    rm -rf "$build"
    echo "GARAGE COULD NOT BE INSTALLED from crates.io (cargo install garage --version $version --locked failed, see above)" >&2
    exit 5
  fi
  rm -rf "$build"
  bin="$repo/.tools/bin/garage"
fi
echo "using $bin ($("$bin" --version 2>/dev/null | head -n 1))"

dir="$(mktemp -d "${TMPDIR:-/tmp}/marble-garage.XXXXXX")"
pid=""
cleanup() {
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  rm -rf "$dir"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
rpc_port="$(free_port)"; s3_port="$(free_port)"; admin_port="$(free_port)"
rand_hex() { python3 -c "import secrets; print(secrets.token_hex($1))"; }
mkdir -p "$dir/meta" "$dir/data"
cat >"$dir/garage.toml" <<EOF
metadata_dir = "$dir/meta"
data_dir = "$dir/data"
db_engine = "sqlite"
replication_factor = 1
rpc_bind_addr = "127.0.0.1:$rpc_port"
rpc_public_addr = "127.0.0.1:$rpc_port"
rpc_secret = "$(rand_hex 32)"
[s3_api]
s3_region = "garage"
api_bind_addr = "127.0.0.1:$s3_port"
root_domain = ".s3.garage.localhost"
[admin]
api_bind_addr = "127.0.0.1:$admin_port"
EOF
G=("$bin" -c "$dir/garage.toml")
"${G[@]}" server >"$dir/garage.log" 2>&1 &
pid=$!

# Up when the CLI gets an answer over RPC (bounded: 30 s).
node=""
for _ in $(seq 300); do
  kill -0 "$pid" 2>/dev/null || { cat "$dir/garage.log" >&2; echo "garage exited at start" >&2; exit 1; }
  node="$("${G[@]}" node id -q 2>/dev/null | cut -d@ -f1 || true)"
  [ -n "$node" ] && break
  sleep 0.1
done
[ -n "$node" ] || { cat "$dir/garage.log" >&2; echo "garage did not answer within 30 s" >&2; exit 1; }
"${G[@]}" layout assign -z dc1 -c 1G "$node" >/dev/null
"${G[@]}" layout apply --version 1 >/dev/null
# A throw-away key for this run only (Garage's format: GK + 24 hex digits, 64 hex digits).
key_id="GK$(rand_hex 12)"
secret="$(rand_hex 32)"
"${G[@]}" key import --yes "$key_id" "$secret" -n marble-test >/dev/null
"${G[@]}" bucket create marble-test >/dev/null
"${G[@]}" bucket allow --read --write --owner marble-test --key marble-test >/dev/null

export MARBLE_GARAGE_S3="127.0.0.1:$s3_port" MARBLE_GARAGE_REGION=garage \
  MARBLE_GARAGE_BUCKET=marble-test MARBLE_GARAGE_KEY_ID="$key_id" MARBLE_GARAGE_SECRET="$secret"
cd "$repo"
if ! cargo test -p marble-tests --locked --test images_garage -- --ignored --nocapture; then
  echo "--- garage log (tail) ---" >&2; tail -n 50 "$dir/garage.log" >&2
  exit 1
fi
echo "garage $version over https: push / ls / verify / pull / rm and legacy zip passed"

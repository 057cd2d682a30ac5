#!/usr/bin/env bash
# Two daemons on two simulated hosts sharing one local S3 server: each writes its fleet
# heartbeat to the bucket, and `marblectl fleet ls` against either one lists both.
#
# Installs the project's pinned S3 server (s3s-fs) if it is missing, starts it on a free
# loopback port, runs scripts/demo.sh for hosts macphsft01 and macphsft02 in the background
# (policy manual, [images] and [fleet] pointing at the server), waits until `fleet ls` shows
# both hosts, prints it, and stops everything (Ctrl-C also cleans up).
#
# usage: scripts/demo-fleet.sh [--keep]
#   --keep   leave the two daemons and the S3 server running; prints how to stop them
set -euo pipefail

keep=false
case "${1:-}" in
    "") ;;
    --keep) keep=true ;;
    *) sed -n '10,11p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 64 ;;
esac

root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
target="${CARGO_TARGET_DIR:-$root/target}"
case "$target" in /*) ;; *) target="$root/$target" ;; esac
bin="$target/debug"
hosts=(macphsft01 macphsft02)

./scripts/install-s3-server.sh
echo "==> building marbled, marblectl and the prlctl simulator" >&2
cargo build --locked -q -p marbled -p marblectl -p marble-tests --bins

# A short directory: macOS limits unix socket paths to 104 bytes.
dir="$(mktemp -d /tmp/mfXXXXXX)"
pids=()
cleanup() {
    for pid in "${pids[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${pids[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    ./scripts/s3-server.sh stop "$dir/s3" || true
    rm -rf "$dir"
}
if ! $keep; then
    trap cleanup EXIT
else
    trap 'cleanup; exit 130' INT TERM
fi

eval "$(./scripts/s3-server.sh start "$dir/s3" | sed 's/^/s3_/')"
# s3s-fs buckets are directories of its data root.
mkdir -p "$s3_DATA/macvmstorage"
secret="$dir/s3.secret"
(umask 077 && printf 'access_key = test\nsecret_key = testtest\n' >"$secret")
echo "==> S3 server at $s3_ENDPOINT" >&2

for host in "${hosts[@]}"; do
    ./scripts/demo.sh --dir "$dir/$host" --host "$host" --policy manual \
        --s3 "$s3_ENDPOINT" --s3-secret "$secret" >"$dir/$host.log" 2>&1 &
    pids+=("$!")
done

ctl() { "$bin/marblectl" --socket "$dir/${hosts[0]}/marbled.sock" "$@"; }
ctl2() { "$bin/marblectl" --socket "$dir/${hosts[1]}/marbled.sock" "$@"; }
started="${hosts[1]}-ROOT-VM-macOS-15"
echo "==> waiting for both heartbeats (written every 5 s) and $started to run on ${hosts[1]}" >&2
listed=false
vm_started=false
for _ in $(seq 120); do
    # Once the second daemon answers, start a VM there: the first daemon's `fleet ls` shows it
    # running on the second host once the next heartbeat is written.
    if ! $vm_started && ctl2 vm start "$started" >"$dir/vm-start.log" 2>&1; then
        vm_started=true
    fi
    if out="$(ctl fleet ls 2>/dev/null)" \
        && grep -q "^${hosts[0]} .* -$" <<<"$out" && grep -q "^${hosts[1]} .* $started$" <<<"$out" \
        && grep -q "${hosts[0]}-SPI-VM-macOS-15" <<<"$out"; then
        listed=true
        break
    fi
    for i in "${!pids[@]}"; do
        if ! kill -0 "${pids[$i]}" 2>/dev/null; then
            echo "demo-fleet.sh: the daemon of ${hosts[$i]} exited; its log:" >&2
            cat "$dir/${hosts[$i]}.log" >&2
            exit 1
        fi
    done
    sleep 0.5
done
if ! $listed; then
    echo "demo-fleet.sh: fleet ls never listed both hosts; last answer:" >&2
    ctl fleet ls >&2 || true
    exit 1
fi

echo
echo "\$ marblectl --socket $dir/${hosts[0]}/marbled.sock fleet ls"
ctl fleet ls
if $keep; then
    cat <<EOF

Left running (daemon PIDs ${pids[*]}, S3 server: $dir/s3/env):
  $bin/marblectl --socket $dir/${hosts[1]}/marbled.sock fleet ls --json
  $bin/marblectl --socket $dir/${hosts[0]}/marbled.sock vm start ${hosts[0]}-SPI-VM-macOS-14
Stop everything with:
  kill ${pids[*]}; $root/scripts/s3-server.sh stop $dir/s3; rm -rf $dir
EOF
    trap - INT TERM
fi

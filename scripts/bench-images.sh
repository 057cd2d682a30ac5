#!/usr/bin/env bash
# Benchmark: MARBLE image push/pull vs s3cmd put/get of the equivalent `zip -r` archive, on the
# same local s3s-fs server, in one run. Not part of CI. Figures go to docs/benchmarks.md.
#   scripts/bench-images.sh [WORKDIR]      (needs ~10 GiB free in WORKDIR; default /tmp)
# Env: BENCH_DATA_MIB (real data, default 1280), BENCH_APPARENT_GIB (default 6).
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
work="$(mktemp -d "${1:-/tmp}/marble-bench.XXXXXX")"
data_mib="${BENCH_DATA_MIB:-1280}"
apparent_gib="${BENCH_APPARENT_GIB:-6}"
name="2026-01-01-ROOT-VM-macOS-bench"
trap '"$repo/scripts/s3-server.sh" stop "$work/srv" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
TIME=/usr/bin/time
[ -x "$TIME" ] || { echo "needs GNU time (/usr/bin/time): apt-get install time" >&2; exit 1; }

"$repo/scripts/install-s3-server.sh" >/dev/null
if [ ! -x "$repo/.tools/s3cmd-venv/bin/s3cmd" ]; then
  python3 -m venv "$repo/.tools/s3cmd-venv" && "$repo/.tools/s3cmd-venv/bin/pip" -q install s3cmd
fi
S3CMD="$repo/.tools/s3cmd-venv/bin/s3cmd"
(cd "$repo" && cargo build -q --release -p marble-tests --bin bench-images)
BENCH="$repo/target/release/bench-images"

echo "== generating bundle: ${apparent_gib} GiB apparent, ~${data_mib} MiB data"
b="$work/src/$name.macvm"; mkdir -p "$b/harddisk.hdd" "$b/logs"
disk="$b/harddisk.hdd/disk.hds"
truncate -s "${apparent_gib}G" "$disk"
q=$((data_mib / 4))
# 40 % random (incompressible), 40 % text-like (base64), 20 % written zeros, in separate regions.
head -c $((q * 2 * 1048576 * 8 / 10)) /dev/urandom | dd of="$disk" bs=1M conv=notrunc status=none
base64 -w 100 /dev/urandom | head -c $((q * 2 * 1048576 * 8 / 10)) | dd of="$disk" bs=1M seek=$((apparent_gib * 1024 / 3)) conv=notrunc status=none
head -c $((q * 1048576 * 8 / 10)) /dev/zero | dd of="$disk" bs=1M seek=$((apparent_gib * 1024 * 2 / 3)) conv=notrunc status=none
for i in $(seq 200); do head -c $((RANDOM * 4)) /dev/urandom | base64 > "$b/logs/log$i.txt"; done
printf '<ParallelsVirtualMachine/>\n' > "$b/config.pvs"
apparent=$(du -sb --apparent-size "$b" | cut -f1); allocated=$(du -sB1 "$b" | cut -f1)
(cd "$work/src" && zip -q -r "$name.zip" "$name.macvm")
zipsize=$(stat -c %s "$work/src/$name.zip")
echo "apparent $apparent B, allocated $allocated B, zip $zipsize B"

echo "== disk limits (dd)"
dd_w=$(dd if=/dev/zero of="$work/dd.tmp" bs=8M count=128 conv=fdatasync 2>&1 | tail -1 | awk -F, '{print $NF}')
dd_r=$(dd if="$work/dd.tmp" of=/dev/null bs=8M iflag=direct 2>&1 | tail -1 | awk -F, '{print $NF}')
rm -f "$work/dd.tmp"
echo "write (fdatasync):$dd_w  read (O_DIRECT):$dd_r"

eval "$("$repo/scripts/s3-server.sh" start "$work/srv")"
bucket=bench; mkdir -p "$DATA/$bucket"
printf 'access_key = test\nsecret_key = testtest\n' > "$work/secret"; chmod 600 "$work/secret"
host=${ENDPOINT#http://}
cat > "$work/s3cfg" <<CFG
[default]
access_key = test
secret_key = testtest
host_base = $host
host_bucket = $host
use_https = False
bucket_location = us-east-1
signature_v2 = False
CFG
export BENCH_ENDPOINT="$ENDPOINT" BENCH_BUCKET="$bucket" BENCH_SECRET_FILE="$work/secret"

run() { # label, command… → prints "label seconds maxrss_kib"
  local label=$1; shift
  local s=$SECONDS
  local start; start=$(date +%s.%N)
  $TIME -f '%M' -o "$work/time.out" "$@" > "$work/out.txt"
  local end; end=$(date +%s.%N)
  printf '%s %.2f %s\n' "$label" "$(echo "$end - $start" | bc)" "$(tail -1 "$work/time.out")" | tee -a "$work/results"
  : "$s"
}
sync
run marble_push "$BENCH" push "$b" "$name"
run s3cmd_put "$S3CMD" -c "$work/s3cfg" -q put "$work/src/$name.zip" "s3://$bucket/ROOT/$name.zip"
mkdir -p "$work/dst1" "$work/dst2" "$work/dst3"
run marble_pull "$BENCH" pull "$name" "$work/dst1"
run s3cmd_get "$S3CMD" -c "$work/s3cfg" -q get "s3://$bucket/ROOT/$name.zip" "$work/dst2/$name.zip"
run s3cmd_get_unzip sh -c "'$S3CMD' -c '$work/s3cfg' -q get --force 's3://$bucket/ROOT/$name.zip' '$work/dst3/$name.zip' && cd '$work/dst3' && unzip -q '$name.zip'"
# MARBLE reading the legacy zip object (its own pull path for old images)
"$S3CMD" -c "$work/s3cfg" -q del "s3://$bucket/ROOT/$name.marble.json" >/dev/null
mkdir -p "$work/dst4"; run marble_pull_zip "$BENCH" pull "$name" "$work/dst4"
cmp "$b/harddisk.hdd/disk.hds" "$work/dst1/$name.macvm/harddisk.hdd/disk.hds"
cmp "$b/harddisk.hdd/disk.hds" "$work/dst4/$name.macvm/harddisk.hdd/disk.hds"
echo "pulled allocation: marble $(du -sB1 "$work/dst1/$name.macvm" | cut -f1) B, unzip $(du -sB1 "$work/dst3/$name.macvm" | cut -f1) B, source $allocated B"
echo "== results (label seconds peak_rss_kib); apparent=$apparent zip=$zipsize"
cat "$work/results"

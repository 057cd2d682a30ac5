#!/usr/bin/env bash
# Benchmark: MARBLE image push/pull vs the seed's way (`zip -r` + `s3cmd put`, `s3cmd get` +
# `unzip`) of the same generated bundle, on the same local s3s-fs server, in one run.
# Not part of CI. Figures go to docs/benchmarks.md (## Images).
#   scripts/bench-images.sh [WORKDIR]      (needs ~3 × apparent size free in WORKDIR; default /tmp)
# Env: BENCH_DATA_MIB (real data, default 1280), BENCH_APPARENT_GIB (default 6).
# MARBLE runs through `bench-images` (tests/src/bin), i.e. `marbled::images` push_dir /
# pull_to_dir: the transfer engine the daemon's push/pull jobs run, without the clone/scrub
# and register steps around it (those are prlctl calls, not data movement).
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
S3CMD="$("$repo/scripts/install-s3cmd.sh" | tail -1)"
(cd "$repo" && cargo build -q --release -p marble-tests --bin bench-images)
BENCH="$repo/target/release/bench-images"

echo "== generating bundle: ${apparent_gib} GiB apparent, ~${data_mib} MiB data"
b="$work/src/$name.macvm"; mkdir -p "$b/harddisk.hdd" "$b/logs"
disk="$b/harddisk.hdd/disk.hds"
truncate -s "${apparent_gib}G" "$disk"
q=$((data_mib / 4))
# 40 % random (incompressible), 40 % text-like (base64), 20 % written zeros, in separate regions.
head -c $((q * 2 * 1048576 * 8 / 10)) /dev/urandom | dd of="$disk" bs=1M conv=notrunc status=none
{ base64 -w 100 /dev/urandom || true; } | head -c $((q * 2 * 1048576 * 8 / 10)) | dd of="$disk" bs=1M seek=$((apparent_gib * 1024 / 3)) conv=notrunc status=none
head -c $((q * 1048576 * 8 / 10)) /dev/zero | dd of="$disk" bs=1M seek=$((apparent_gib * 1024 * 2 / 3)) conv=notrunc status=none
for i in $(seq 200); do head -c $((RANDOM * 4)) /dev/urandom | base64 > "$b/logs/log$i.txt"; done
printf '<ParallelsVirtualMachine/>\n' > "$b/config.pvs"
apparent=$(du -sb --apparent-size "$b" | cut -f1); allocated=$(du -sB1 "$b" | cut -f1)
echo "apparent $apparent B, allocated $allocated B"

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

run() { # label, command… → appends "label seconds maxrss_kib" to results
  local label=$1; shift
  local start end
  start=$(date +%s.%N)
  $TIME -f '%M' -o "$work/time.out" "$@" > "$work/out.txt"
  end=$(date +%s.%N)
  printf '%s %.2f %s\n' "$label" "$(echo "$end - $start" | bc)" "$(tail -1 "$work/time.out")" | tee -a "$work/results"
}
sync
echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || true
run marble_push "$BENCH" push "$b" "$name"
echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || true
run seed_zip sh -c "cd '$work/src' && zip -q -r '$name.zip' '$name.macvm'"
zipsize=$(stat -c %s "$work/src/$name.zip")
run seed_s3cmd_put "$S3CMD" -c "$work/s3cfg" -q put "$work/src/$name.zip" "s3://$bucket/ROOT/$name.zip"
rm -f "$work/src/$name.zip"
mkdir -p "$work/dst1" "$work/dst2" "$work/dst3"
run marble_pull "$BENCH" pull "$name" "$work/dst1"
run seed_s3cmd_get "$S3CMD" -c "$work/s3cfg" -q get "s3://$bucket/ROOT/$name.zip" "$work/dst2/$name.zip"
# The seed unzipped with -j (flattening the bundle); plain unzip keeps the structure.
run seed_unzip sh -c "cd '$work/dst2' && unzip -q '$name.zip' && rm '$name.zip'"
cmp "$b/harddisk.hdd/disk.hds" "$work/dst1/$name.macvm/harddisk.hdd/disk.hds"
cmp "$b/harddisk.hdd/disk.hds" "$work/dst2/$name.macvm/harddisk.hdd/disk.hds"
pull_alloc=$(du -sB1 "$work/dst1/$name.macvm" | cut -f1); unzip_alloc=$(du -sB1 "$work/dst2/$name.macvm" | cut -f1)
rm -rf "$work/dst2"
# MARBLE reading the legacy zip object (its pull path for old images): manifest removed.
"$S3CMD" -c "$work/s3cfg" -q del "s3://$bucket/ROOT/$name.marble.json" >/dev/null
run marble_pull_zip "$BENCH" pull "$name" "$work/dst3"
cmp "$b/harddisk.hdd/disk.hds" "$work/dst3/$name.macvm/harddisk.hdd/disk.hds"
object=$(stat -c %s "$DATA/$bucket/ROOT/$name.marble")

echo
echo "== results: apparent $apparent B, allocated $allocated B, marble object $object B, zip $zipsize B"
echo "== pulled allocation: marble $pull_alloc B, unzip $unzip_alloc B (source $allocated B)"
echo "== disk: sequential write$dd_w, read$dd_r"
awk -v app="$apparent" -v alloc="$allocated" '
  { t[$1]=$2; r[$1]=$3 }
  function mib(x) { return x / 1048576 }
  function row(label, secs, rss) {
    printf "| %s | %.1f | %.0f | %.0f | %.0f |\n", label, secs, mib(app)/secs, mib(alloc)/secs, rss/1024
  }
  END {
    print "| operation | seconds | apparent MiB/s | allocated MiB/s | peak RSS MiB |"
    print "|---|---:|---:|---:|---:|"
    row("MARBLE push", t["marble_push"], r["marble_push"])
    up = t["seed_zip"] + t["seed_s3cmd_put"]; upr = (r["seed_zip"] > r["seed_s3cmd_put"]) ? r["seed_zip"] : r["seed_s3cmd_put"]
    row("seed upload: zip -r + s3cmd put", up, upr)
    row("  of which zip -r", t["seed_zip"], r["seed_zip"])
    row("  of which s3cmd put", t["seed_s3cmd_put"], r["seed_s3cmd_put"])
    row("MARBLE pull", t["marble_pull"], r["marble_pull"])
    down = t["seed_s3cmd_get"] + t["seed_unzip"]; downr = (r["seed_s3cmd_get"] > r["seed_unzip"]) ? r["seed_s3cmd_get"] : r["seed_unzip"]
    row("seed download: s3cmd get + unzip", down, downr)
    row("  of which s3cmd get", t["seed_s3cmd_get"], r["seed_s3cmd_get"])
    row("  of which unzip", t["seed_unzip"], r["seed_unzip"])
    row("MARBLE pull of the legacy zip", t["marble_pull_zip"], r["marble_pull_zip"])
    printf "\nspeed-up: push %.1fx vs zip+put (%.1fx vs s3cmd put alone); pull %.1fx vs get+unzip (%.1fx vs s3cmd get alone)\n",
      up / t["marble_push"], t["seed_s3cmd_put"] / t["marble_push"], down / t["marble_pull"], t["seed_s3cmd_get"] / t["marble_pull"]
  }' "$work/results"

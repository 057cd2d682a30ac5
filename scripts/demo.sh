#!/usr/bin/env bash
# Run marbled on a simulated host (no Parallels needed): README command (a).
#
# Builds the daemon, the CLI and the prlctl simulator, creates a simulated host with two ROOT
# and two SPI VMs in a short temp dir, writes a config that points marbled's prlctl adapter at
# the simulator, prints how to point marblectl at it, then runs marbled in the foreground
# (Ctrl-C: graceful stop; a second Ctrl-C exits at once).
#
# usage: scripts/demo.sh [--dir DIR] [--policy cycle|manual] [--host NAME]
#                        [--s3 ENDPOINT --s3-secret FILE]
#   --dir DIR      use (or reuse) DIR instead of a new temp dir; an existing simulated host
#                  in DIR/sim is kept as it is (VM states, faults, scripted guests)
#   --policy P     `cycle` (default: the seed's round robin on shortened timings) or `manual`
#                  (only marblectl starts and stops VMs)
#   --host NAME    the host's name (default macphsft01; its VMs are NAME-ROOT-VM-macOS-14, …)
#   --s3 URL       an S3 server for [images] (bucket macvmstorage) and a [fleet] heartbeat
#                  every 5 s; --s3-secret is its 0600 key file (scripts/demo-fleet.sh)
set -euo pipefail

usage() {
    sed -n '9,17p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 64
}

dir=""
policy="cycle"
host="macphsft01"
s3=""
s3_secret=""
while [ $# -gt 0 ]; do
    case "$1" in
        --dir) [ $# -ge 2 ] || usage; dir="$2"; shift 2 ;;
        --policy) [ $# -ge 2 ] || usage; policy="$2"; shift 2 ;;
        --host) [ $# -ge 2 ] || usage; host="$2"; shift 2 ;;
        --s3) [ $# -ge 2 ] || usage; s3="$2"; shift 2 ;;
        --s3-secret) [ $# -ge 2 ] || usage; s3_secret="$2"; shift 2 ;;
        -h|--help) usage ;;
        *) echo "demo.sh: unknown argument $1" >&2; usage ;;
    esac
done
case "$policy" in
    cycle|manual) ;;
    *) echo "demo.sh: --policy must be cycle or manual, not $policy" >&2; exit 64 ;;
esac
case "$host" in
    ''|*[!A-Za-z0-9._-]*) echo "demo.sh: --host must be letters, digits, '.', '-', '_'" >&2; exit 64 ;;
esac
if [ -n "$s3" ] && [ -z "$s3_secret" ]; then
    echo "demo.sh: --s3 needs --s3-secret" >&2
    exit 64
fi

root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
target="${CARGO_TARGET_DIR:-$root/target}"
case "$target" in /*) ;; *) target="$root/$target" ;; esac
bin="$target/debug"

echo "==> building marbled, marblectl and the prlctl simulator" >&2
cargo build --locked -p marbled -p marblectl -p marble-tests --bins

# A short directory: macOS limits unix socket paths to 104 bytes.
if [ -z "$dir" ]; then
    dir="$(mktemp -d /tmp/mbXXXXXX)"
else
    mkdir -p "$dir"
    dir="$(cd "$dir" && pwd)"
fi
sim="$dir/sim"
socket="$dir/marbled.sock"
config="$dir/marbled.toml"

root_vms=("$host-ROOT-VM-macOS-14" "$host-ROOT-VM-macOS-15")
spi_vms=("$host-SPI-VM-macOS-14" "$host-SPI-VM-macOS-15")
listener="/Users/runner/actions-runner/bin/Runner.Listener run"
worker="/Users/runner/actions-runner/bin/Runner.Worker spawnclient"

if [ -f "$sim/state.json" ]; then
    echo "==> reusing the simulated host in $sim" >&2
else
    echo "==> creating a simulated host in $sim" >&2
    init_args=()
    for vm in "${root_vms[@]}" "${spi_vms[@]}"; do
        init_args+=(--vm "$vm")
    done
    "$bin/prlsim" --dir "$sim" init "${init_args[@]}" >/dev/null
    for vm in "${root_vms[@]}" "${spi_vms[@]}"; do
        # A guest takes a moment to boot: exec fails until then, like a real VM.
        "$bin/prlsim" --dir "$sim" vm boot-delay "$vm" 2000
    done
    for vm in "${root_vms[@]}"; do
        # ROOT VMs count as ready once the GitHub runner listener runs in the guest.
        "$bin/prlsim" --dir "$sim" proc boot-add "$vm" "$listener"
    done
fi

# TOML basic string.
q() {
    local s="${1//\\/\\\\}"
    printf '"%s"' "${s//\"/\\\"}"
}

user="$(id -un)"
group="$(id -gn)"
cat >"$config" <<EOF
# Written by scripts/demo.sh: marbled on a simulated host. Keys: \`marbled print-default-config\`.
[daemon]
socket = $(q "$socket")
socket_group = $(q "$group")
admin_users = [$(q "$user")]
state_file = $(q "$dir/state.bin")
shutdown_budget = "10s"
host_name = $(q "$host")

[prlctl]
path = $(q "$bin/fake-prlctl")
timeout = "20s"
start_timeout = "30s"
stop_timeout = "30s"

[prlctl.env]
MARBLE_PRLSIM_DIR = $(q "$sim")

[probe]
timeout = "10s"
ready_poll = "500ms"

[scheduler]
policy = $(q "$policy")
cycle_on_min = "20s"
cycle_on_jitter = "10s"
cycle_off_window = "15s"
busy_recheck = "15s"
ready_timeout = "30s"
graceful_stop_timeout = "10s"
inventory_interval = "5s"
EOF
if [ -n "$s3" ]; then
    cat >>"$config" <<EOF

[images]
endpoint = $(q "$s3")
bucket = "macvmstorage"
path_style = true
credentials = ["secret-file"]
secret_file = $(q "$s3_secret")
state_dir = $(q "$dir/images")

[fleet]
interval = "5s"
EOF
fi
"$bin/marbled" --config "$config" check-config

if [ "$policy" = cycle ]; then
    # The cycle keeps an idle ROOT VM on the host; Jenkins' request-slot takes it over.
    try_vm="  $bin/marblectl request-slot ${spi_vms[0]}; echo \"exit \$?\"
  $bin/marblectl vm stop ${spi_vms[0]}"
else
    try_vm="  $bin/marblectl vm start ${spi_vms[0]}
  $bin/marblectl vm stop ${spi_vms[0]}
  $bin/marblectl request-slot ${spi_vms[1]}; echo \"exit \$?\""
fi

cat <<EOF

MARBLE demo: marbled on a simulated host (policy: $policy)
  dir:     $dir
  config:  $config
  VMs:     ${root_vms[*]} ${spi_vms[*]}

In another terminal:

  export MARBLE_SOCKET=$socket
  $bin/marblectl status
  $bin/marblectl vm list --json
$try_vm
  $bin/prlsim --dir $sim show     # what the simulated Parallels sees
  $bin/prlsim --dir $sim log      # every prlctl call marbled made

Make a ROOT VM busy (a job runs), then idle again:
  $bin/prlsim --dir $sim proc add ${root_vms[0]} ${worker}
  $bin/prlsim --dir $sim proc rm ${root_vms[0]} Runner.Worker

Ctrl-C stops marbled (a second Ctrl-C exits at once). Restart on the same host with:
  $root/scripts/demo.sh --dir $dir --policy $policy
Remove everything with: rm -rf $dir

EOF
exec "$bin/marbled" --config "$config" run

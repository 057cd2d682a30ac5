#!/usr/bin/env bash
# Prepare a simulated host the way the seed scripts leave one (reference seed-scripts.md), for
# `marblectl migrate check` and the runbook in docs/MIGRATION.md:
#   DIR/sim    the prlctl simulator's host: the README's four VMs; the cycler's VM
#              (ROOT-VM-macOS-15) running with Runner.Listener, every other bundle locked
#              with `chflags uchg` (lockAllExcept; the simulator's lock and its .uchg marker);
#              in each ROOT guest ~/.PAT, /Library/LaunchDaemons/start.actions.runner.plist and
#              ~/VM_ROOT_download_and_config_runner.sh (VM_ROOT_03), in each SPI guest the
#              host's private ~/.ssh/parallels_vm_key (VM_SPI_01)
#   DIR/home   the VM owner's home: MARBLE/.s3cfg 0644 (scp'd with the default umask),
#              MARBLE/vm_cycler.sh (a stand-in that only logs and waits) running under nohup
#              with --log MARBLE/vm_cycler.log, as start_vm_cycler.sh runs it
#   DIR/cycler.pid   its pid (kill it, or run its stop step, to end it)
# The GitHub side (offline registrations of the AUTO_RUNNER) lives in the fake GitHub of the
# test that calls this. Secrets here are fake values.
#
# usage: scripts/seed-host.sh DIR [HOST]     (PRLSIM: the prlsim binary, default target/debug/prlsim)
set -euo pipefail

dir=${1:?usage: scripts/seed-host.sh DIR [HOST]}
host=${2:-macphsft01}
prlsim=${PRLSIM:-target/debug/prlsim}
sim=$dir/sim
home=$dir/home
root14=$host-ROOT-VM-macOS-14
root15=$host-ROOT-VM-macOS-15
spi14=$host-SPI-VM-macOS-14
spi15=$host-SPI-VM-macOS-15
ps() { "$prlsim" --dir "$sim" "$@" >/dev/null; }

mkdir -p "$sim" "$home/MARBLE" "$home/Parallels"
ps init --vm "$root14" --vm "$root15" --vm "$spi14" --vm "$spi15"

# Guests: what VM_ROOT_03 / VM_SPI_01 left (written while the bundles are still writable).
for vm in "$root14" "$root15"; do
  ps proc boot-add "$vm" /Users/sftnight/actions-runner/bin/Runner.Listener run
  printf 'ghp_seedFAKEpat0000000000000000000000\n' |
    ps guest write "$vm" /Users/sftnight/.PAT --mode 644
  printf '<plist><dict><key>Label</key><string>start.actions.runner</string></dict></plist>\n' |
    ps guest write "$vm" /Library/LaunchDaemons/start.actions.runner.plist --mode 644
  printf 'GH_PAT=$(cat ~/.PAT)\n' |
    ps guest write "$vm" /Users/sftnight/VM_ROOT_download_and_config_runner.sh --mode 755
done
for vm in "$spi14" "$spi15"; do
  printf -- '-----BEGIN OPENSSH PRIVATE KEY-----\nFAKE\n-----END OPENSSH PRIVATE KEY-----\n' |
    ps guest write "$vm" /Users/sftnight/.ssh/parallels_vm_key --mode 600
done

# The cycler started ROOT-VM-macOS-15 and locked every other bundle (lockAllExcept).
ps vm state "$root15" running
for vm in "$root14" "$spi14" "$spi15"; do
  ps vm lock "$vm"
done

# Host home: the S3 credentials as scp'd from macphsft41, world-readable.
printf '[default]\naccess_key = SEEDFAKEACCESSKEY\nsecret_key = seedFakeSecretKey\nhost_base = s3.cern.ch\n' \
  >"$home/MARBLE/.s3cfg"
chmod 644 "$home/MARBLE/.s3cfg"

# The cycler under nohup (start_vm_cycler.sh). The stand-in logs like vm_cycler.sh and then
# blocks in the shell's own `read` on a FIFO it holds open: no child process, nothing to
# outlive it when it is killed.
cat >"$home/MARBLE/vm_cycler.sh" <<'CYCLER'
#!/usr/bin/env bash
# Stand-in for the seed's vm_cycler.sh (scripts/seed-host.sh): logs, touches nothing.
if [ "${1:-}" = --log ]; then exec >>"$2" 2>&1; echo "Logging enabled: $2"; fi
printf '[%s] %s\n' "$(date '+%Y-%m-%d %H:%M:%S')" "Cycler started."
fifo=$(dirname "$0")/.cycler.fifo
[ -p "$fifo" ] || mkfifo "$fifo"
exec 3<>"$fifo"
while :; do read -r -u 3 _ || true; done
CYCLER
chmod 755 "$home/MARBLE/vm_cycler.sh"
nohup "$home/MARBLE/vm_cycler.sh" --log "$home/MARBLE/vm_cycler.log" >/dev/null 2>&1 &
echo $! >"$dir/cycler.pid"
echo "seed-shaped host in $dir (cycler pid $(cat "$dir/cycler.pid"))"

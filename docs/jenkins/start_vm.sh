#!/bin/sh
# Jenkins SSH-launcher prefix for a MARBLE host. See docs/jenkins/README.md.
#
#   start_vm.sh VM [WAIT] ssh -T USER@VM '   <- the node's "Prefix Start Agent Command"
#   '                                         <- its "Suffix Start Agent Command"
#
# Jenkins runs this on the Mac host over SSH; whatever this script prints on stdout becomes
# the agent's remoting channel, so every message goes to stderr (marblectl request-slot
# writes nothing on stdout) and the last step is `exec`, so the agent's exit status is ours.
set -eu
vm="$1"; shift
wait="0s"
case "${1:-}" in
  [0-9]*) wait="$1"; shift ;;
esac
# Jenkins' ssh session is non-interactive: its PATH is /usr/bin:/bin:/usr/sbin:/sbin, without
# /usr/local/bin. So marblectl is called by the path docs/OPERATIONS.md installs it at
# (MARBLECTL overrides it, e.g. for another prefix).
marblectl="${MARBLECTL:-/usr/local/bin/marblectl}"
if [ ! -x "$marblectl" ]; then
  echo "start_vm.sh: $marblectl is missing or not executable; install marblectl there (docs/OPERATIONS.md) or set MARBLECTL" >&2
  exit 127
fi
# 0: granted (the VM runs and its guest answers); 75: host busy with a job (Jenkins tries
# another node); 77: locked / maintenance; 2: unknown VM; 69: marbled not running.
"$marblectl" request-slot "$vm" --wait "$wait" >&2
exec "$@"

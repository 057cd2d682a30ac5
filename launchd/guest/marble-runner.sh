#!/bin/sh
# marble-runner.sh — run the JIT-configured GitHub Actions runners of a guest boot (one
# per config the host delivers: one per boot unless the host re-arms it).
#
# Started as root by the LaunchDaemon ch.cern.sft.marble.runner (RunAtLoad, no KeepAlive).
# The host (marbled) mints a single-use JIT config at each boot and writes it through
# `prlctl exec` stdin into $MARBLE_JIT_PATH (root:wheel 0600 under a 0700 directory in
# /var/run, which macOS empties at boot), then creates "$MARBLE_JIT_PATH.ready".
# No token ever lives in this VM: the JIT config registers exactly one runner, once.
#
# The config is read, deleted, and handed to run.sh on its command line: that is how
# actions/runner accepts it (`run.sh --jitconfig`). It is therefore visible in the runner's
# own argv inside this guest only (never on the host), while the runner lives; it is single
# use and already consumed by then. It is never written anywhere else.
set -u

JIT=${MARBLE_JIT_PATH:-/var/run/marble/jitconfig}
READY="$JIT.ready"
RUNNER_USER=${MARBLE_RUNNER_USER:?MARBLE_RUNNER_USER not set}
RUNNER_DIR=${MARBLE_RUNNER_DIR:-/Users/$RUNNER_USER/actions-runner}
WAIT=${MARBLE_JIT_WAIT_SECONDS:-900}

log() { echo "$(date -u +%Y-%m-%dT%H:%M:%SZ) marble-runner: $*" >&2; }

# Stale runner credentials from an earlier boot (a VM killed before its job) must not be
# reused or end up in an uploaded image.
rm -f "$RUNNER_DIR/.runner" "$RUNNER_DIR/.credentials" "$RUNNER_DIR/.credentials_rsaparams"

# One runner per config. After it exits, wait again: with `[scheduler] jobs_per_boot` > 1
# the host may re-arm this guest with a fresh config for one more job (docs/CI.md, "Runner
# re-arm"); without one within the wait, this boot is done.
runs=0
while :; do
  waited=0
  while [ ! -f "$READY" ]; do
    if [ "$waited" -ge "$WAIT" ]; then
      if [ "$runs" -eq 0 ]; then
        log "no jit config after ${WAIT}s; not starting a runner this boot"
      else
        log "no further jit config after ${WAIT}s; done for this boot"
      fi
      exit 0
    fi
    sleep 2
    waited=$((waited + 2))
  done

  # Only a root-owned 0600 file written by the host is trusted.
  owner=$(/usr/bin/stat -f %Su "$JIT" 2>/dev/null || echo missing)
  mode=$(/usr/bin/stat -f %Lp "$JIT" 2>/dev/null || echo missing)
  if [ "$owner" != root ] || [ "$mode" != 600 ]; then
    log "refusing $JIT (owner=$owner mode=$mode)"
    rm -f "$JIT" "$READY"
    exit 1
  fi

  config=$(cat "$JIT")
  rm -f "$JIT" "$READY"
  if [ -z "$config" ]; then
    log "empty jit config; not starting a runner"
    exit 1
  fi

  if ! cd "$RUNNER_DIR"; then
    log "runner directory $RUNNER_DIR missing"
    exit 1
  fi
  log "starting one ephemeral runner as $RUNNER_USER in $RUNNER_DIR"
  /usr/bin/sudo -u "$RUNNER_USER" -H -- ./run.sh --jitconfig "$config"
  rc=$?
  config=
  runs=$((runs + 1))
  # run.sh exits 0 both after its one job and after a fatal error (ci-apis.md §2.4); the
  # host decides what to do with the VM from GitHub's view of the runner, not from this
  # status. The used registration's credentials go before a next one is written.
  log "runner exited with status $rc"
  rm -f "$RUNNER_DIR/.runner" "$RUNNER_DIR/.credentials" "$RUNNER_DIR/.credentials_rsaparams"
done

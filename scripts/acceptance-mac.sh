#!/usr/bin/env bash
# The on-Mac acceptance suite (docs/ACCEPTANCE.md): one command on one real Parallels host,
# or against the prlctl simulator with --simulator (CI). Run with --help for usage.
set -euo pipefail
cd "$(dirname "$0")/.."

usage() {
  cat <<'EOF'
Usage: scripts/acceptance-mac.sh --source VM [options]      (on a Mac with Parallels Pro/Business)
       scripts/acceptance-mac.sh --simulator [options]      (anywhere: against the prlctl simulator)

Runs MARBLE's acceptance checks with the daemon's own code: parses every prlctl/prlsrvctl
output the daemon reads, exec semantics, busy probes, JIT delivery, scrub, provisioning,
power operations with timings, the daemon under launchd, and the CI/S3 APIs when
credentials are given. One line per check: `ID: pass (…)`, `ID: fail (…)`,
`ID: skipped: REASON`. Everything seen goes to the output directory (results.json,
results.txt, timings.json, fixtures/). Runbook: docs/ACCEPTANCE.md.

The VM checks clone the STOPPED source VM into a throw-away VM named marble-acceptance-…,
detach its external disks (the real build disk), attach a decoy build disk, disconnect its
network, and delete it at the end, also after a failure or Ctrl-C. The source VM is never
started or changed; the suite refuses a running source or an existing clone name.

Options:
  --source VM              stopped VM to clone (required for the exec/guest/lifecycle groups on a Mac)
  --clone-name NAME        name of the throw-away VM (must start with marble-acceptance-)
  --simulator              run against the prlctl simulator; Mac-only checks say `skipped: simulator`
  --only GROUPS            comma-separated subset of: parse,exec,guest,lifecycle,launchd,apis
  --out DIR                output directory (default target/acceptance/<host>-<UTC time>)
  --prlctl PATH            prlctl (default /usr/local/bin/prlctl)
  --prlsrvctl PATH         prlsrvctl (default /usr/local/bin/prlsrvctl)
  --ssh-host HOST          where the launchd checks ssh to as Jenkins would (default localhost)
  --github-token-file F    GitHub token (file, mode 0600) allowed to register runners in --github-scope
  --github-scope SCOPE     repo:OWNER/NAME or org:NAME
  --github-api URL         GitHub API (default https://api.github.com)
  --jenkins-url URL        Jenkins controller
  --jenkins-user USER      Jenkins user of the API token
  --jenkins-token-file F   Jenkins API token (file, mode 0600)
  --jenkins-node NODE      a node the suite may take offline for a second and back online
  --s3-config FILE         TOML with an [images] table (a marbled.toml works): S3 checks
  -h, --help               this text

Exit status: 0 every check passed or was skipped; 1 a check failed; 2 usage or setup error.
The launchd checks need `sudo -v` just before the run and key-based `ssh localhost`.
EOF
}

die() { echo "acceptance-mac: $*" >&2; exit 2; }

simulator=0
out=""
declare -a envs=()
while [ $# -gt 0 ]; do
  opt="$1"
  case "$opt" in
    -h|--help) usage; exit 0 ;;
    --simulator) simulator=1; shift; continue ;;
    --source|--clone-name|--only|--out|--prlctl|--prlsrvctl|--ssh-host|--github-*|--jenkins-*|--s3-config) ;;
    *) die "unknown option $opt (see --help)" ;;
  esac
  [ $# -ge 2 ] || die "$opt needs a value (see --help)"
  val="$2"; shift 2
  case "$opt" in
    --source) envs+=("MARBLE_ACCEPT_SOURCE=$val") ;;
    --clone-name) envs+=("MARBLE_ACCEPT_CLONE_NAME=$val") ;;
    --only)
      for g in ${val//,/ }; do
        case "$g" in parse|exec|guest|lifecycle|launchd|apis) ;; *) die "unknown group $g in --only (see --help)" ;; esac
      done
      envs+=("MARBLE_ACCEPT_ONLY=$val") ;;
    --out) out="$val" ;;
    --prlctl) envs+=("MARBLE_ACCEPT_PRLCTL=$val") ;;
    --prlsrvctl) envs+=("MARBLE_ACCEPT_PRLSRVCTL=$val") ;;
    --ssh-host) envs+=("MARBLE_ACCEPT_SSH_HOST=$val") ;;
    --github-token-file) envs+=("MARBLE_ACCEPT_GITHUB_TOKEN_FILE=$val") ;;
    --github-scope) envs+=("MARBLE_ACCEPT_GITHUB_SCOPE=$val") ;;
    --github-api) envs+=("MARBLE_ACCEPT_GITHUB_API=$val") ;;
    --jenkins-url) envs+=("MARBLE_ACCEPT_JENKINS_URL=$val") ;;
    --jenkins-user) envs+=("MARBLE_ACCEPT_JENKINS_USER=$val") ;;
    --jenkins-token-file) envs+=("MARBLE_ACCEPT_JENKINS_TOKEN_FILE=$val") ;;
    --jenkins-node) envs+=("MARBLE_ACCEPT_JENKINS_NODE=$val") ;;
    --s3-config) envs+=("MARBLE_ACCEPT_S3_CONFIG=$val") ;;
    *) die "unknown option $opt (see --help)" ;;
  esac
done

if [ "$simulator" = 0 ] && [ "$(uname -s)" != Darwin ]; then
  die "a real run needs macOS with Parallels; use --simulator elsewhere"
fi

stamp=$(date -u +%Y%m%dT%H%M%SZ)
if [ -z "$out" ]; then
  if [ "$simulator" = 1 ]; then
    out="target/acceptance/simulator-$stamp"
  else
    out="target/acceptance/$(hostname -s)-$stamp"
  fi
fi
[ -e "$out/results.json" ] && die "$out already holds results; choose another --out"
mkdir -p "$out"
out=$(cd "$out" && pwd)
envs+=("MARBLE_ACCEPT_OUT=$out")
[ "$simulator" = 1 ] && envs+=("MARBLE_ACCEPT_SIMULATOR=1")

# Undo what an interrupted run left behind, from its cleanup.log (`create KIND ARGS` lines
# without a matching `removed KIND ARGS`). Only names and paths the suite itself uses are
# ever touched.
prlctl_bin=/usr/local/bin/prlctl
for e in "${envs[@]}"; do
  case "$e" in MARBLE_ACCEPT_PRLCTL=*) prlctl_bin="${e#*=}" ;; esac
done
cleanup() {
  local log="$out/cleanup.log"
  [ -f "$log" ] || return 0
  local kind args
  while read -r verb kind args; do
    [ "$verb" = create ] || continue
    grep -qxF "removed $kind $args" "$log" && continue
    case "$kind" in
      vm)
        [ "$simulator" = 1 ] && continue
        case "$args" in *marble-acceptance*) ;; *) continue ;; esac
        echo "acceptance-mac: cleanup: deleting VM $args" >&2
        "$prlctl_bin" stop "$args" --kill >/dev/null 2>&1 || true
        echo y | "$prlctl_bin" delete "$args" >/dev/null 2>&1 || true ;;
      launchd)
        case "$args" in ch.cern.sft.marbled|ch.cern.sft.marble-acceptance-keychain) ;; *) continue ;; esac
        echo "acceptance-mac: cleanup: launchctl bootout system/$args" >&2
        sudo -n launchctl bootout "system/$args" >/dev/null 2>&1 || true ;;
      path)
        case "$args" in
          /Library/LaunchDaemons/ch.cern.sft.marbled.plist|/Library/LaunchDaemons/ch.cern.sft.marble-acceptance-keychain.plist|\
          /usr/local/bin/marbled|/usr/local/bin/marblectl|/usr/local/etc/marble|/usr/local/var/marble|/usr/local/var/log/marble) ;;
          *) continue ;;
        esac
        echo "acceptance-mac: cleanup: removing $args" >&2
        sudo -n rm -rf "$args" || true ;;
      keychain)
        set -- $args
        [ "${1:-}" = marble-acceptance ] || continue
        security delete-generic-password -s "$1" -a "${2:-}" >/dev/null 2>&1 || true ;;
      dir)
        case "$args" in /tmp/mbacc*) rm -rf "$args" ;; esac ;;
      s3)
        echo "acceptance-mac: cleanup: S3 image $args may remain: marblectl image rm --yes $args" >&2 ;;
    esac
  done < "$log"
}
runner=""
stop_runner() {
  # The suite runs as its own process group (job control below): take all of it down, so no
  # test binary keeps driving prlctl after the script is gone, then clean up.
  if [ -n "$runner" ] && kill -0 "$runner" 2>/dev/null; then
    kill -TERM -- "-$runner" 2>/dev/null || true
    wait "$runner" 2>/dev/null || true
  fi
  exit 130
}
trap cleanup EXIT
trap stop_runner INT TERM

started=$SECONDS
export RUST_BACKTRACE=0
echo "::: building the suite: cargo test -p marble-tests --test real_host --no-run"
if ! cargo test -p marble-tests --test real_host --locked --no-run >"$out/build.log" 2>&1; then
  tail -n 30 "$out/build.log" >&2
  die "the suite does not build (full log: $out/build.log)"
fi
echo "::: running the acceptance suite ($([ "$simulator" = 1 ] && echo simulator || echo "this Mac")); output in $out"
set -m
(
  set +e
  env "${envs[@]}" cargo test -p marble-tests --test real_host --locked -q -- \
    --ignored --exact acceptance_suite --nocapture --test-threads=1 2>&1 | tee "$out/run.log" \
    | grep --line-buffered -Ev '^(running [0-9]+ tests?|test result:|$)'
  exit "${PIPESTATUS[0]}"
) &
runner=$!
set +m
status=0
wait "$runner" || status=$?
runner=""
echo "::: $(cat "$out/summary.txt" 2>/dev/null || echo "no summary: the suite did not finish (see $out/run.log)")"
echo "::: wall time $((SECONDS - started)) s"
if [ "$status" = 0 ]; then exit 0; fi
[ -f "$out/summary.txt" ] && exit 1
exit 2

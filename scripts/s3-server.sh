#!/usr/bin/env bash
# Start/stop the local S3 test server (s3s-fs) on a free loopback port with a temp data dir.
#   scripts/s3-server.sh start [STATE_DIR]   prints ENDPOINT=… DATA=… PID=… (and writes STATE_DIR/env)
#   scripts/s3-server.sh stop  [STATE_DIR]   kills that PID and removes the data dir
# Credentials: access key "test", secret key "testtest", region us-east-1, path style.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
state="${2:-${TMPDIR:-/tmp}/marble-s3-server}"
bin="$repo/.tools/bin/s3s-fs"
[ -x "$bin" ] || bin="$(command -v s3s-fs || true)"
case "${1:-}" in
start)
  [ -n "$bin" ] || { echo "s3s-fs missing: run scripts/install-s3-server.sh" >&2; exit 1; }
  mkdir -p "$state"
  data="$(mktemp -d "${TMPDIR:-/tmp}/marble-s3-data.XXXXXX")"
  port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
  "$bin" --host 127.0.0.1 --port "$port" --access-key test --secret-key testtest "$data" >"$state/server.log" 2>&1 &
  pid=$!
  for _ in $(seq 200); do
    # Accepting connections is enough (bash's /dev/tcp: no curl needed).
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
    kill -0 "$pid" 2>/dev/null || { cat "$state/server.log" >&2; exit 1; }
    sleep 0.05
  done
  printf 'ENDPOINT=http://127.0.0.1:%s\nDATA=%s\nPID=%s\n' "$port" "$data" "$pid" | tee "$state/env"
  ;;
stop)
  [ -f "$state/env" ] || exit 0
  # shellcheck disable=SC1091
  . "$state/env"
  kill "$PID" 2>/dev/null || true
  rm -rf "$DATA" "$state/env"
  ;;
*) echo "usage: $0 start|stop [STATE_DIR]" >&2; exit 2 ;;
esac

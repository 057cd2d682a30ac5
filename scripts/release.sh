#!/usr/bin/env bash
# Build a release tarball: marbled and marblectl, the LaunchDaemon plist, the newsyslog conf,
# shell completions and man pages, laid out as they are installed (usr/local/bin, Library/
# LaunchDaemons, etc/newsyslog.d, usr/local/share) under one top directory. The non-binary
# files are written by the binaries themselves (`marblectl install --destdir`), so the
# tarball holds exactly what `marblectl install` would put on a host.
#
# usage: scripts/release.sh [--profile release|dev] [--target TRIPLE] [--bin-dir DIR] [--out DIR]
#   --profile P     cargo profile to build (default release)
#   --target T      cargo target triple (e.g. aarch64-apple-darwin on a Mac); default: this host
#   --bin-dir DIR   take marbled and marblectl from DIR instead of building them (tests)
#   --out DIR       where the tarball and its .sha256 go (default dist/)
# Prints the tarball's path as the last line. On a host:
#   tar xzf marble-….tar.gz && sudo marble-…/usr/local/bin/marblectl install
set -euo pipefail

usage() {
    sed -n '8,13p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 64
}

root_dir="$(cd "$(dirname "$0")/.." && pwd)"
profile="release"
target=""
bin_dir=""
out="$root_dir/dist"
while [ $# -gt 0 ]; do
    case "$1" in
        --profile) profile="${2:?}"; shift 2 ;;
        --target) target="${2:?}"; shift 2 ;;
        --bin-dir) bin_dir="${2:?}"; shift 2 ;;
        --out) out="${2:?}"; shift 2 ;;
        -h|--help) usage ;;
        *) echo "release.sh: unknown argument $1" >&2; usage ;;
    esac
done

if [ -z "$bin_dir" ]; then
    args=(build --locked --profile "$profile" -p marbled -p marblectl)
    [ -n "$target" ] && args+=(--target "$target")
    (cd "$root_dir" && cargo "${args[@]}")
    # cargo's directory for the dev profile is `debug`.
    dir_name="$profile"
    [ "$profile" = "dev" ] && dir_name="debug"
    bin_dir="$root_dir/target/${target:+$target/}$dir_name"
fi
for bin in marbled marblectl; do
    [ -x "$bin_dir/$bin" ] || { echo "release.sh: no $bin in $bin_dir" >&2; exit 66; }
done

# "marblectl 0.1.0 (commit abc1234, protocol 1.5)" -> 0.1.0-abc1234
version_line="$("$bin_dir/marblectl" --version)"
version="$(echo "$version_line" | sed -E 's/^marblectl ([^ ]+) \(commit ([^,]+),.*$/\1-\2/')"
if [ -n "$target" ]; then
    platform="$target"
else
    platform="$(uname -s | tr '[:upper:]' '[:lower:]')-$(uname -m)"
fi
name="marble-$version-$platform"

stage="$(mktemp -d "${TMPDIR:-/tmp}/marble-release.XXXXXX")"
trap 'rm -rf "$stage"' EXIT
# An install into a staging root writes every file the way a host gets it.
"$bin_dir/marblectl" install --destdir "$stage/root" --from "$bin_dir" >/dev/null 2>"$stage/install.log" || {
    cat "$stage/install.log" >&2
    exit 70
}
mkdir -p "$stage/$name"
# Programs only: config, token files, state and log directories are made on the host.
for part in usr/local/bin Library/LaunchDaemons etc/newsyslog.d usr/local/share; do
    mkdir -p "$stage/$name/$(dirname "$part")"
    cp -R "$stage/root/$part" "$stage/$name/$part"
done

mkdir -p "$out"
tarball="$out/$name.tar.gz"
owner=(--owner=0 --group=0 --numeric-owner)
tar --version 2>/dev/null | grep -q 'GNU tar' || owner=(--uid 0 --gid 0)
tar -czf "$tarball" "${owner[@]}" -C "$stage" "$name"
(cd "$out" && (sha256sum "$name.tar.gz" 2>/dev/null || shasum -a 256 "$name.tar.gz") > "$name.tar.gz.sha256")
echo "$version_line" >&2
echo "$tarball"

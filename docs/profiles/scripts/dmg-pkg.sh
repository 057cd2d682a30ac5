#!/bin/sh
# Download a .dmg, install the .pkg inside it, clean up. $1: URL; $2: pkg path inside the
# mounted volume (glob allowed). Fails on any download or install error (the seed did not check).
set -eu
url="$1"; pkg="$2"
tmp=$(mktemp -d /tmp/marble-dmg.XXXXXX)
trap 'hdiutil detach -quiet "$tmp/mnt" 2>/dev/null || true; rm -rf "$tmp"' EXIT
curl -fsSL --retry 3 -o "$tmp/x.dmg" "$url"
hdiutil attach -quiet -nobrowse -mountpoint "$tmp/mnt" "$tmp/x.dmg"
for p in "$tmp"/mnt/$pkg; do
  installer -pkg "$p" -target /
done

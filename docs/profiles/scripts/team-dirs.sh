#!/bin/sh
# Per-team, per-macOS-version directories on the build disk, linked into the CI user's home.
# $1: CI user; $2: directory prefix (ROOT or SPI); $3...: "SUBDIR:LINK" pairs, e.g.
# "ROOT-CI:ROOT-CI" (LINK relative to the user's home; "-" = no link).
# Idempotent: mkdir -p, ln -sfn. No chflags uchg (the seed's immutable link broke its own
# re-linking at every boot).
set -eu
user="$1"; team="$2"; shift 2
major=$(sw_vers -productVersion | cut -d. -f1)
base="/Volumes/build_drive/$team-macOS-$major"
[ -d /Volumes/build_drive ] || { echo "/Volumes/build_drive is not mounted" >&2; exit 1; }
home=$(dscl . -read "/Users/$user" NFSHomeDirectory | awk '{print $2}')
for pair in "$@"; do
  sub="${pair%%:*}"; link="${pair#*:}"
  mkdir -p "$base/$sub"
  chown "$user:staff" "$base/$sub"
  if [ "$link" != "-" ]; then
    ln -sfn "$base/$sub" "$home/$link"
    chown -h "$user:staff" "$home/$link"
  fi
done
echo "$base ready"

#!/bin/sh
# Xcode Command Line Tools without the GUI prompt: the "install on demand" flag makes
# softwareupdate list the CLT package, which is then installed by name.
set -eu
flag=/tmp/.com.apple.dt.CommandLineTools.installondemand.in-progress
touch "$flag"
trap 'rm -f "$flag"' EXIT
label=$(softwareupdate -l 2>/dev/null | sed -n 's/^\* Label: \(Command Line Tools.*\)$/\1/p' | sort -V | tail -1)
[ -n "$label" ] || { echo "no Command Line Tools in softwareupdate -l" >&2; exit 1; }
softwareupdate -i "$label" --agree-to-license

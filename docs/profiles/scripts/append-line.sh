#!/bin/sh
# Append a line to a file once (the seed appended duplicates at every run). $1: user;
# $2: file relative to the user's home; $3: the line.
set -eu
home=$(dscl . -read "/Users/$1" NFSHomeDirectory | awk '{print $2}')
f="$home/$2"
touch "$f"
grep -qxF "$3" "$f" || printf '%s\n' "$3" >> "$f"
chown "$1:staff" "$f"

#!/bin/sh
# Partition the shared build disk as JHFS+ "build_drive" — only an explicit, checked target.
# $1: the exact size in bytes the build disk must have (the seed's 262144 MiB = 274877906944).
# A disk qualifies only if it is a physical (virtual) disk with NO partitions and exactly that
# size; anything else (the boot disk, a formatted disk, a disk of another size) is never
# touched. Exactly one disk must qualify, else nothing is done and the candidates are listed.
# (The seed picked "the line with a * and no letter t" of `diskutil list`, which could erase
# the wrong disk.)
set -eu
want="${1:?usage: build-disk.sh SIZE_BYTES}"
if mount | grep -q ' on /Volumes/build_drive '; then
  echo "build_drive already mounted"; exit 0
fi
found=""
for d in $(diskutil list physical | awk '/^\/dev\/disk[0-9]+/ {sub("/dev/", "", $1); print $1}'); do
  if diskutil list "$d" | grep -Eq '^ +[1-9][0-9]*:'; then continue; fi   # has partitions
  size=$(diskutil info -plist "$d" | plutil -extract TotalSize raw -o - -)
  [ "$size" = "$want" ] || continue
  found="$found $d"
done
set -- $found
if [ "$#" -ne 1 ]; then
  echo "refusing to partition: expected exactly one unpartitioned disk of $want bytes, found $#:$found" >&2
  diskutil list physical >&2
  exit 1
fi
echo "partitioning /dev/$1 ($want bytes, no partitions) as build_drive"
diskutil partitionDisk "$1" GPT JHFS+ build_drive 100%

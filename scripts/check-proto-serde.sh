#!/usr/bin/env bash
# Wire-format guard for marble-proto (docs/PROTOCOL.md, "bincode rules"). bincode is not
# self-describing, so:
#   - serde attributes that drop or reshape data (flatten, skip*, tag, untagged) are forbidden
#     anywhere in marble-proto/src;
#   - the wire types defined in wire.rs and handshake.rs must not use types whose encoding
#     depends on the platform or is not deterministic (usize, isize, HashMap, PathBuf,
#     SystemTime).
# Prints every offending line (file:line:text) and exits 1 if there is any.
set -euo pipefail
cd "$(dirname "$0")/.."

src=marble-proto/src
wire_files=("$src/wire.rs" "$src/handshake.rs")
status=0

for f in "${wire_files[@]}"; do
  [[ -f $f ]] || { echo "check-proto-serde: missing $f" >&2; exit 2; }
done

# Comments are stripped before matching so that documentation may name what it forbids.
strip_comments() { sed -E 's#//.*$##'; }

# 1. Forbidden serde attributes inside #[serde(...)], in any file under marble-proto/src.
#    `skip` also catches skip_serializing, skip_deserializing and skip_serializing_if.
attr_re='#\[serde\([^]]*\b(flatten|skip|skip_serializing|skip_deserializing|skip_serializing_if|tag|untagged)\b'
while IFS= read -r -d '' file; do
  while IFS= read -r hit; do
    echo "$file:$hit  <- forbidden serde attribute (bincode is not self-describing)"
    status=1
  done < <(strip_comments < "$file" | grep -nE "$attr_re" || true)
done < <(find "$src" -name '*.rs' -print0)

# 2. Forbidden types in the definitions of wire types in wire.rs and handshake.rs: the body of
#    every public top-level struct or enum, except error types derived with thiserror (local errors,
#    never encoded). Helper code (limits, readers, impls) may use usize freely.
type_re='\b(usize|isize|HashMap|PathBuf|SystemTime)\b'
wire_items() {
  awk '
    /^#\[cfg\(test\)\]/ { exit }
    /^#\[derive\(/ { derive = derive $0; next }
    /^pub (struct|enum) / {
      inside = 1
      skip = (derive ~ /thiserror::Error/)
    }
    inside && !skip { printf "%d:%s\n", NR, $0 }
    inside && (/^}/ || /;[[:space:]]*$/ && !/\{/) { inside = 0; derive = ""; next }
    !inside && !/^#\[/ && !/^\/\/\// { derive = "" }
  ' "$1"
}
for file in "${wire_files[@]}"; do
  while IFS= read -r hit; do
    echo "$file:$hit  <- forbidden wire type (use u32/u64, BTreeMap/Vec, String, u64 unix ms)"
    status=1
  done < <(wire_items "$file" | strip_comments | grep -E "^[0-9]+:.*$type_re" || true)
done

if [[ $status -eq 0 ]]; then
  echo "check-proto-serde: ok"
fi
exit "$status"

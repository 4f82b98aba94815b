#!/usr/bin/env bash
# Keeps what fuzzing found: merges each target's generated corpus (fuzz/corpus/TARGET, written
# by fuzz/run.sh; git-ignored) into the committed fuzz/kept/TARGET, taking only the inputs that
# add coverage to what fuzz/kept/TARGET and fuzz/seeds/TARGET already reach (libFuzzer's
# -merge=1). Commit fuzz/kept afterwards: every later run, CI's included, starts from it.
#
#   FUZZ_SECONDS=300 fuzz/run.sh && fuzz/keep.sh          # all targets
#   fuzz/keep.sh flv chunk_decoder                         # some
set -euo pipefail
cd "$(dirname "$0")/.."
PRIVATE='(^|[^0-9])(10\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}|172\.(1[6-9]|2[0-9]|3[01])\.[0-9]{1,3}\.[0-9]{1,3}|192\.168\.[0-9]{1,3}\.[0-9]{1,3})'

if [ $# -gt 0 ]; then
  targets=("$@")
else
  mapfile -t targets < <(cargo fuzz list)
fi
for t in "${targets[@]}"; do
  [ -d "fuzz/corpus/$t" ] || { echo "== $t: no fuzz/corpus/$t (run fuzz/run.sh $t first)"; continue; }
  mkdir -p "fuzz/kept/$t"
  before=$(find "fuzz/kept/$t" -type f | wc -l)
  # The first corpus of a merge counts as covered: the kept inputs and the seeds go there,
  # and what the merge adds to it (new file names) is what reaches something they do not.
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  cp -a "fuzz/kept/$t/." "$tmp/"
  [ -d "fuzz/seeds/$t" ] && cp -an "fuzz/seeds/$t/." "$tmp/"
  ls "$tmp" > "$tmp.had"
  cargo fuzz run "$t" -s none -- -merge=1 "$tmp" "fuzz/corpus/$t" >"$tmp.log" 2>&1 ||
    { tail -20 "$tmp.log"; exit 1; }
  # Inputs holding a private (RFC 1918) address are not kept: mutations of the seeds'
  # configs would spread deployment-looking addresses through the repository.
  ls "$tmp" | grep -vxFf "$tmp.had" | while read -r name; do
    grep -qaE "$PRIVATE" "$tmp/$name" || cp -n "$tmp/$name" "fuzz/kept/$t/$name"
  done
  rm -rf "$tmp" "$tmp.had" "$tmp.log"
  trap - EXIT
  after=$(find "fuzz/kept/$t" -type f | wc -l)
  echo "== $t: fuzz/kept/$t $before -> $after inputs"
done

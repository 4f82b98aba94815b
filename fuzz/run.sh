#!/usr/bin/env bash
# Runs the fuzz targets (all of them, or those named) for FUZZ_SECONDS each (default 60) on the
# stable toolchain without a sanitizer, as fuzz/README.md describes. Each starts from the
# committed corpora, fuzz/kept/TARGET (what earlier runs found that adds coverage, merged in by
# fuzz/keep.sh) and fuzz/seeds/TARGET (hand-made and generated seeds), and writes what it
# finds to fuzz/corpus/TARGET (the first, writable corpus directory; git-ignored).
# Extra libFuzzer flags: FUZZ_ARGS="-jobs=2 -workers=2" fuzz/run.sh flv
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${FUZZ_SECONDS:-60}
if [ $# -gt 0 ]; then
  targets=("$@")
else
  mapfile -t targets < <(cargo fuzz list)
fi
for t in "${targets[@]}"; do
  mkdir -p "fuzz/corpus/$t"
  seeds=()
  [ -d "fuzz/kept/$t" ] && seeds+=("fuzz/kept/$t")
  [ -d "fuzz/seeds/$t" ] && seeds+=("fuzz/seeds/$t")
  echo "== $t (${secs}s)"
  # shellcheck disable=SC2086
  cargo fuzz run "$t" "fuzz/corpus/$t" "${seeds[@]}" -s none -- -max_total_time="$secs" ${FUZZ_ARGS:-}
done

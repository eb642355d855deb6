#!/usr/bin/env bash
# Embedded-engine macro benchmark (issue: word count >= 2.0x and CloudFront
# report >= 3.0x the single-threaded baselines on 2 cores, peak RSS < 1 GiB).
#
#   bash benches/embedded.sh [LINES]      (default 4,600,000 lines, about 1 GB)
#
# Generates the CloudFront logs once (cached under target/bench-data), then
# in the same run times each baseline and the Riffle example on local[2],
# checks that they print the same answer, and prints MB/s and the ratios.
set -euo pipefail
cd "$(dirname "$0")/.."
lines=${1:-4600000}
target=${CARGO_TARGET_DIR:-target}
command -v /usr/bin/time >/dev/null || { apt-get update -qq && apt-get install -y -qq time; }

cargo build --release -q --bin riffle --example wordcount --example cloudfront \
  -p riffle -p riffle-benches 2>&1 | grep -v '^$' || true
cargo build --release -q -p riffle-benches --bins

data="$target/bench-data/cloudfront-$lines"
if [ ! -f "$data/.complete" ]; then
  rm -rf "$data"
  "$target/release/riffle" gen cloudfront --lines "$lines" --files 8 --seed 7 --out "$data"
  touch "$data/.complete"
fi
bytes=$(du -cb "$data"/*.log | tail -1 | cut -f1)
mb=$(awk -v b="$bytes" 'BEGIN { printf "%.1f", b / 1e6 }')
echo "input: $lines lines, $mb MB in $data"

# run NAME OUTFILE CMD... : prints "seconds peak_kib" and stores stdout.
run() {
  local out=$1; shift
  /usr/bin/time -f "%e %M" -o "$out.time" "$@" >"$out" 2>"$out.err" || { cat "$out.err"; exit 1; }
  cat "$out.time"
}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

report() { # NAME BASE_TIME RIFFLE_TIME RIFFLE_KIB TARGET
  awk -v n="$1" -v b="$2" -v r="$3" -v k="$4" -v t="$5" -v mb="$mb" 'BEGIN {
    printf "%-11s baseline %7.2f s %7.1f MB/s | riffle local[2] %7.2f s %7.1f MB/s, peak %5.0f MiB | speed-up %.2fx (target %.1fx)\n",
      n, b, mb / b, r, mb / r, k / 1024, b / r, t }'
}

read -r wb _ < <(run "$tmp/wc-base" "$target/release/wordcount_baseline" 20 "$data")
read -r wr wk < <(run "$tmp/wc-riffle" "$target/release/examples/wordcount" --master 'local[2]' --top 20 "$data")
cmp -s "$tmp/wc-base" "$tmp/wc-riffle" || { echo "word count answers differ"; diff "$tmp/wc-base" "$tmp/wc-riffle" | head; exit 1; }
read -r cb _ < <(run "$tmp/cf-base" "$target/release/cloudfront_baseline" 2014-07-05 2014-08-05 "$data")
read -r cr ck < <(run "$tmp/cf-riffle" "$target/release/examples/cloudfront" --master 'local[2]' "$data")
cmp -s "$tmp/cf-base" "$tmp/cf-riffle" || { echo "CloudFront answers differ"; diff "$tmp/cf-base" "$tmp/cf-riffle" | head; exit 1; }

report "wordcount" "$wb" "$wr" "$wk" 2.0
report "cloudfront" "$cb" "$cr" "$ck" 3.0

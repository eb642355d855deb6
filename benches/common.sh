# Shared by the benchmark scripts: build, generate the data set once
# (cached under target/bench-data), and time commands.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
lines=${1:-4600000}
target=${CARGO_TARGET_DIR:-target}
command -v /usr/bin/time >/dev/null || { apt-get update -qq && apt-get install -y -qq time; }

cargo build --release -q --bin riffle --example wordcount --example cloudfront --example jobs -p riffle
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

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# run OUTFILE CMD... : prints "seconds peak_kib" and keeps stdout in OUTFILE.
run() {
  local out=$1; shift
  /usr/bin/time -f "%e %M" -o "$out.time" "$@" >"$out" 2>"$out.err" || { cat "$out.err"; exit 1; }
  cat "$out.time"
}

# same A B WHAT: fails unless two runs printed the same answer.
same() {
  cmp -s "$1" "$2" || { echo "$3: answers differ"; diff "$1" "$2" | head; exit 1; }
}

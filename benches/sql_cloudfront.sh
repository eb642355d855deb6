#!/usr/bin/env bash
# The CloudFront report as SQL against the Dataset-API example (issue: the
# Hive script on the ~1 GB logs at least as fast as the Dataset example).
#
#   bash benches/sql_cloudfront.sh [LINES]   (default 4,600,000 lines, about 1 GB)
#
# Runs `riffle sql -f examples/cloudfront.hql` and `examples/cloudfront`,
# both on local[2] over the same files in the same run (best of three
# each), checks that they give the same counts, and prints the times and
# their ratio.
source "$(dirname "$0")/common.sh"

# The script reads ${INPUT}/cloudfront/data, as in the tutorial.
mkdir -p "$tmp/in/cloudfront"
ln -s "$(cd "$data" && pwd)" "$tmp/in/cloudfront/data"

# Best of three runs each, alternating (single runs on a shared machine
# vary by 10-20%); peak memory is the largest seen.
dt=999999; st=999999; dk=0; sk=0
for _ in 1 2 3; do
  read -r t k < <(run "$tmp/dataset" "$target/release/examples/cloudfront" --master 'local[2]' "$data")
  dt=$(awk -v a="$dt" -v b="$t" 'BEGIN { print (b < a ? b : a) }'); dk=$(( k > dk ? k : dk ))
  rm -rf "$tmp/out"
  read -r t k < <(run "$tmp/sql" "$target/release/riffle" sql --master 'local[2]' \
    --var "INPUT=$tmp/in" --var "OUTPUT=$tmp/out" -f examples/cloudfront.hql)
  st=$(awk -v a="$st" -v b="$t" 'BEGIN { print (b < a ? b : a) }'); sk=$(( k > sk ? k : sk ))
done
tr '\001' '\t' <"$tmp/out/os_requests/000000_0" | sort >"$tmp/sql-rows"
same "$tmp/dataset" "$tmp/sql-rows" "SQL and Dataset CloudFront reports"

awk -v d="$dt" -v s="$st" -v dk="$dk" -v sk="$sk" -v mb="$mb" 'BEGIN {
  printf "cloudfront Dataset API %6.2f s %7.1f MB/s, peak %4.0f MiB\n", d, mb / d, dk / 1024
  printf "cloudfront SQL (hql)   %6.2f s %7.1f MB/s, peak %4.0f MiB\n", s, mb / s, sk / 1024
  printf "SQL / Dataset: %.2fx (target <= 1.0x)\n", s / d }'

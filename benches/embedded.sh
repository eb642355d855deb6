#!/usr/bin/env bash
# Embedded-engine macro benchmark (issue: word count >= 2.0x and CloudFront
# report >= 3.0x the single-threaded baselines on 2 cores, peak RSS < 1 GiB).
#
#   bash benches/embedded.sh [LINES]      (default 4,600,000 lines, about 1 GB)
#
# Times each baseline and the Riffle example on local[2] in the same run,
# checks that they print the same answer, and prints MB/s and the ratios.
source "$(dirname "$0")/common.sh"

report() { # NAME BASE_TIME RIFFLE_TIME RIFFLE_KIB TARGET
  awk -v n="$1" -v b="$2" -v r="$3" -v k="$4" -v t="$5" -v mb="$mb" 'BEGIN {
    printf "%-11s baseline %7.2f s %7.1f MB/s | riffle local[2] %7.2f s %7.1f MB/s, peak %5.0f MiB | speed-up %.2fx (target %.1fx)\n",
      n, b, mb / b, r, mb / r, k / 1024, b / r, t }'
}

read -r wb _ < <(run "$tmp/wc-base" "$target/release/wordcount_baseline" 20 "$data")
read -r wr wk < <(run "$tmp/wc-riffle" "$target/release/examples/wordcount" --master 'local[2]' --top 20 "$data")
same "$tmp/wc-base" "$tmp/wc-riffle" "word count"
read -r cb _ < <(run "$tmp/cf-base" "$target/release/cloudfront_baseline" 2014-07-05 2014-08-05 "$data")
read -r cr ck < <(run "$tmp/cf-riffle" "$target/release/examples/cloudfront" --master 'local[2]' "$data")
same "$tmp/cf-base" "$tmp/cf-riffle" "CloudFront report"

report "wordcount" "$wb" "$wr" "$wk" 2.0
report "cloudfront" "$cb" "$cr" "$ck" 3.0

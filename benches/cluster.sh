#!/usr/bin/env bash
# Cluster-runtime macro benchmark (issue: local-cluster[2,1] at most 1.3x
# the embedded local[2] time; at least 2,000 no-op tasks per second).
#
#   bash benches/cluster.sh [LINES]       (default 4,600,000 lines, about 1 GB)
source "$(dirname "$0")/common.sh"

report() { # NAME EMBEDDED_TIME CLUSTER_TIME
  awk -v n="$1" -v e="$2" -v c="$3" -v mb="$mb" 'BEGIN {
    printf "%-11s local[2] %6.2f s (%6.1f MB/s) | local-cluster[2,1] %6.2f s (%6.1f MB/s) | cluster/embedded %.2fx (target <= 1.3x)\n",
      n, e, mb / e, c, mb / c, c / e }'
}

for job in wordcount cloudfront; do
  args=("$data")
  [ "$job" = wordcount ] && args=(--top 20 "$data")
  read -r e _ < <(run "$tmp/$job-embedded" "$target/release/examples/$job" --master 'local[2]' "${args[@]}")
  read -r c _ < <(run "$tmp/$job-cluster" "$target/release/examples/$job" --master 'local-cluster[2,1]' "${args[@]}")
  same "$tmp/$job-embedded" "$tmp/$job-cluster" "$job"
  report "$job" "$e" "$c"
done

# Scheduling overhead: 2,000 tasks that do nothing (best of three runs).
best=0
for _ in 1 2 3; do
  "$target/release/examples/jobs" --master 'local-cluster[2,1]' noop 2000 >/dev/null 2>"$tmp/noop.err"
  rate=$(grep -o '[0-9]* tasks/s' "$tmp/noop.err" | cut -d' ' -f1)
  [ "$rate" -gt "$best" ] && best=$rate
done
echo "no-op tasks on local-cluster[2,1]: $best tasks/s (target >= 2000)"

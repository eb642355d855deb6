#!/usr/bin/env bash
# Cluster-runtime macro benchmark (issue: local-cluster[2,1] at most 1.3x
# the embedded local[2] time; at least 2,000 no-op tasks per second; with
# mutual TLS on, local-cluster within 10% of plain text, side by side).
#
#   bash benches/cluster.sh [LINES]       (default 4,600,000 lines, about 1 GB)
source "$(dirname "$0")/common.sh"

report() { # NAME EMBEDDED_TIME CLUSTER_TIME
  awk -v n="$1" -v e="$2" -v c="$3" -v mb="$mb" 'BEGIN {
    printf "%-11s local[2] %6.2f s (%6.1f MB/s) | local-cluster[2,1] %6.2f s (%6.1f MB/s) | cluster/embedded %.2fx (target <= 1.3x)\n",
      n, e, mb / e, c, mb / c, c / e }'
}

report_tls() { # NAME PLAIN_TIME TLS_TIME
  awk -v n="$1" -v p="$2" -v t="$3" 'BEGIN {
    printf "%-11s local-cluster[2,1] plain %6.2f s | mutual TLS %6.2f s | TLS/plain %.2fx (target <= 1.10x)\n",
      n, p, t, t / p }'
}

# Mutual TLS with certificates from `riffle certs`, for the TLS runs.
"$target/release/riffle" certs --out "$tmp/certs" >/dev/null
tls=(env "RIFFLE_TLS_CA=$tmp/certs/ca.pem" "RIFFLE_TLS_CERT=$tmp/certs/driver.pem"
  "RIFFLE_TLS_KEY=$tmp/certs/driver-key.pem" RIFFLE_TLS_MUTUAL=1)

tls_lines=()
for job in wordcount cloudfront; do
  args=("$data")
  [ "$job" = wordcount ] && args=(--top 20 "$data")
  read -r e _ < <(run "$tmp/$job-embedded" "$target/release/examples/$job" --master 'local[2]' "${args[@]}")
  read -r c _ < <(run "$tmp/$job-cluster" "$target/release/examples/$job" --master 'local-cluster[2,1]' "${args[@]}")
  read -r t _ < <(run "$tmp/$job-tls" "${tls[@]}" "$target/release/examples/$job" --master 'local-cluster[2,1]' "${args[@]}")
  same "$tmp/$job-embedded" "$tmp/$job-cluster" "$job"
  same "$tmp/$job-cluster" "$tmp/$job-tls" "$job over TLS"
  report "$job" "$e" "$c"
  tls_lines+=("$(report_tls "$job" "$c" "$t")")
done
printf '%s\n' "${tls_lines[@]}"

# Scheduling overhead: 2,000 tasks that do nothing (best of three runs).
best=0
for _ in 1 2 3; do
  "$target/release/examples/jobs" --master 'local-cluster[2,1]' noop 2000 >/dev/null 2>"$tmp/noop.err"
  rate=$(grep -o '[0-9]* tasks/s' "$tmp/noop.err" | cut -d' ' -f1)
  [ "$rate" -gt "$best" ] && best=$rate
done
echo "no-op tasks on local-cluster[2,1]: $best tasks/s (target >= 2000)"

# The same over mutual TLS: every launch and status pays for it.
best_tls=0
for _ in 1 2 3; do
  "${tls[@]}" "$target/release/examples/jobs" --master 'local-cluster[2,1]' noop 2000 >/dev/null 2>"$tmp/noop-tls.err"
  rate=$(grep -o '[0-9]* tasks/s' "$tmp/noop-tls.err" | cut -d' ' -f1)
  [ "$rate" -gt "$best_tls" ] && best_tls=$rate
done
awk -v p="$best" -v t="$best_tls" 'BEGIN {
  printf "no-op tasks over mutual TLS: %d tasks/s (%.2fx the plain-text rate)\n", t, t / p }'

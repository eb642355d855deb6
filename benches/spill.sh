#!/usr/bin/env bash
# Bounded memory (issue: data several times a 512 MiB executor limit runs
# under that limit; peak RSS under the limit, answers equal the unlimited
# run's, slowdown under 2.5x against it, faster than PySpark with the same
# memory).
#
#   bash benches/spill.sh [N] [LIMIT_MIB]    (default N = 20,000,000; 512)
#
# Jobs (examples/spill.rs, data generated inside the tasks): a word count
# of 2N words over N distinct words, a sort_by of N records, and a SQL
# GROUP BY of 2N rows over N keys. Each runs on local[2] three ways: with
# no memory limit (RIFFLE_EXECUTOR_MEMORY=unlimited, no cgroup), inside a
# cgroup v1 memory cgroup of LIMIT_MIB (the pool defaults to 60% of it),
# and as PySpark local[2] with spark.driver.memory=LIMIT_MIB
# (benches/spill_pyspark.py, the same data and answers) when PySpark can be
# installed. Needs root for the cgroup.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
n=${1:-20000000}
limit_mib=${2:-512}
target=${CARGO_TARGET_DIR:-target}
command -v /usr/bin/time >/dev/null || { apt-get update -qq && apt-get install -y -qq time; }
cargo build --release -q --example spill -p riffle
exe="$target/release/examples/spill"

cg=/sys/fs/cgroup/memory/riffle-bench-$$
mkdir "$cg" || { echo "needs a writable cgroup v1 memory controller (root)"; exit 1; }
echo $((limit_mib << 20)) >"$cg/memory.limit_in_bytes"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"; rmdir "$cg" 2>/dev/null || true' EXIT
export RIFFLE_UI=0 RIFFLE_SPILL_DIR="$tmp/spill"

pyspark=""
if PYSPARK_TARGET="$tmp/pyspark" bash benches/pyspark_setup.sh >/dev/null 2>&1; then
  pyspark="$tmp/pyspark"
else
  echo "PySpark could not be installed: its column is left out"
fi

# run NAME CMD... : "seconds peak_kib" of CMD, its stdout in $tmp/NAME.
run() {
  local name=$1; shift
  /usr/bin/time -f "%e %M" -o "$tmp/$name.time" "$@" >"$tmp/$name" 2>"$tmp/$name.err" \
    || { echo "$name failed:"; tail -5 "$tmp/$name.err"; return 1; }
  cat "$tmp/$name.time"
}

echo "N=$n, limit ${limit_mib} MiB, local[2]"
for job in words sort sql-group; do
  read -r free_s free_kb < <(RIFFLE_EXECUTOR_MEMORY=unlimited run "$job-free" "$exe" --master 'local[2]' "$job" "$n")
  oom_before=$(awk '/^oom_kill /{print $2}' "$cg/memory.oom_control")
  read -r lim_s lim_kb < <(run "$job-limited" sh -c 'echo $$ > "$0/cgroup.procs" && exec "$@"' "$cg" "$exe" --master 'local[2]' "$job" "$n")
  oom=$(( $(awk '/^oom_kill /{print $2}' "$cg/memory.oom_control") - oom_before ))
  cmp -s "$tmp/$job-free" "$tmp/$job-limited" || { echo "$job: answers differ"; diff "$tmp/$job-free" "$tmp/$job-limited"; exit 1; }
  spilled=$(grep -o 'spilled: [0-9]* bytes' "$tmp/$job-limited.err" | awk '{print $2}' || true)
  line="$(cat "$tmp/$job-free")"
  printf "%-9s %s\n" "$job" "$line"
  awk -v j="$job" -v fs="$free_s" -v fk="$free_kb" -v ls="$lim_s" -v lk="$lim_kb" -v sp="${spilled:-0}" -v lim="$limit_mib" -v oom="$oom" 'BEGIN {
    printf "  riffle unlimited %7.2f s, peak %5.0f MiB | under %d MiB: %7.2f s, peak %5.0f MiB, spilled %6.0f MiB, OOM kills %d | slowdown %.2fx (target < 2.5x)\n",
      fs, fk / 1024, lim, ls, lk / 1024, sp / 1048576, oom, ls / fs }'
  if [ -n "$pyspark" ]; then
    if PYTHONPATH="$pyspark" SPARK_LOCAL_DIRS="$tmp" run "$job-spark" python3 benches/spill_pyspark.py "$job" "$n" --memory "${limit_mib}m" >"$tmp/$job-spark.res"; then
      read -r sp_s sp_kb <"$tmp/$job-spark.res"
      job_s=$(grep -o 'time: [0-9.]*' "$tmp/$job-spark.err" | awk '{print $2}')
      cmp -s "$tmp/$job-free" "$tmp/$job-spark" || echo "  PySpark's answer differs: $(cat "$tmp/$job-spark")"
      awk -v ss="$sp_s" -v sj="$job_s" -v sk="$sp_kb" -v ls="$lim_s" -v lim="$limit_mib" 'BEGIN {
        printf "  PySpark (driver memory %d MiB) %7.2f s (job %.2f s), peak %5.0f MiB (largest process) | Riffle under the limit / PySpark job: %.2fx (target < 1)\n",
          lim, ss, sj, sk / 1024, ls / sj }'
    fi
  fi
done

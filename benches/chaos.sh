#!/usr/bin/env bash
# Chaos benchmark (issue 9): the word count and the CloudFront report on a
# cluster of 3 executor processes (the job binary itself, joined to a driver
# on 127.0.0.1), run three ways over the same data:
#
#   fault-free  the reference answer and time;
#   chaos       an executor killed (SIGKILL) every KILL_EVERY seconds and a
#               replacement started that joins the same driver;
#   straggler   RIFFLE_SPECULATION=1 and one executor stopped (SIGSTOP) from
#               its registration to the end of the run.
#
# Answers must equal the fault-free ones byte for byte (the script exits
# non-zero otherwise, or if a job fails). Prints the executors killed, the
# tasks retried and recomputed (from the driver's RIFFLE_LOG=info log) and
# the slowdowns against the targets (chaos < 2x, straggler < 1.5x).
#
#   bash benches/chaos.sh [LINES]        (default 4,600,000 lines, about 1 GB)
#
# SEED (default 1) fixes the sequence of victims (which of the live
# executors, by start order, each kill picks). KILL_EVERY (5 s) is the kill
# period; KILL_FIRST (0.5 s) is the first kill after the job started (the
# CloudFront report takes about 2 s on this data: a first kill at 5 s would
# never land). RIFFLE_HEARTBEAT_TIMEOUT_MS, when set, reaches every process.
source "$(dirname "$0")/common.sh"
chaos_secret=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')

seed=${SEED:-1}
kill_every=${KILL_EVERY:-5}
kill_first=${KILL_FIRST:-0.5}
size=3
RANDOM=$seed

pids=() # every process this script started, killed on exit whatever happens
cleanup() {
  for p in "${pids[@]}"; do
    kill -CONT "$p" 2>/dev/null || true
    kill -KILL "$p" 2>/dev/null || true
  done
  wait 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

now_ms() { echo $(($(date +%s%N) / 1000000)); }

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# wait_for FILE TEXT SECONDS: until FILE contains TEXT, or fail.
wait_for() {
  local deadline=$(($(now_ms) + $3 * 1000))
  until grep -q "$2" "$1" 2>/dev/null; do
    if [ "$(now_ms)" -gt "$deadline" ]; then
      echo "no '$2' in $1 after $3 s:"
      tail -20 "$1"
      exit 1
    fi
    sleep 0.05
  done
}

# start_executor: one more executor of $bin joining $url; its pid is
# appended to `live` (and to `pids`), its log is $out.executor-N.err.
start_executor() {
  env "${run_env[@]}" "$bin" --executor --driver "$url" --cores 1 \
    >/dev/null 2>"$out.executor-$started.err" &
  pids+=($!)
  live+=($!)
  started=$((started + 1))
}

# kill_one: SIGKILL a random live executor (reproducible with SEED) and
# start its replacement.
kill_one() {
  local alive=() p
  for p in "${live[@]}"; do
    case $(ps -o stat= -p "$p" 2>/dev/null) in Z* | "") ;; *) alive+=("$p") ;; esac
  done
  live=("${alive[@]}")
  [ "${#live[@]}" -gt 0 ] || return 0
  local i=$((RANDOM % ${#live[@]}))
  kill -KILL "${live[$i]}" 2>/dev/null || true
  wait "${live[$i]}" 2>/dev/null || true
  live=("${live[@]:0:i}" "${live[@]:i+1}")
  kills=$((kills + 1))
  start_executor
}

# cluster_run JOB MODE: JOB on a driver and $size executors; MODE is
# fault-free, chaos or straggler. Output in $tmp/JOB-MODE.out, the driver's
# log in .err; sets `elapsed` (seconds, driver start to exit) and `kills`.
cluster_run() {
  local job=$1 mode=$2
  out="$tmp/$job-$mode"
  bin="$target/release/examples/$job"
  local port
  port=$(free_port)
  url="http://127.0.0.1:$port"
  live=()
  started=0
  kills=0
  # The driver and its executors share a secret given here, so nothing is
  # read from or written to ~/.riffle/secret.
  run_env=(RIFFLE_LOG=info NO_COLOR=1 "RIFFLE_SECRET=$chaos_secret")
  [ "$mode" = straggler ] && run_env+=(RIFFLE_SPECULATION=1)
  [ -n "${RIFFLE_HEARTBEAT_TIMEOUT_MS:-}" ] && run_env+=("RIFFLE_HEARTBEAT_TIMEOUT_MS=$RIFFLE_HEARTBEAT_TIMEOUT_MS")
  local args=("$data")
  [ "$job" = wordcount ] && args=(--top 20 "$data")

  local t0
  t0=$(now_ms)
  env "${run_env[@]}" RIFFLE_MIN_EXECUTORS=$size "$bin" --master "riffle://127.0.0.1:$port" \
    "${args[@]}" >"$out.out" 2>"$out.err" &
  local driver=$!
  pids+=("$driver")
  wait_for "$out.err" "driver listening" 60
  for _ in $(seq $size); do start_executor; done
  local stopped=
  if [ "$mode" = straggler ]; then
    # Stop it as soon as it has registered (before, the driver would wait
    # for it): the driver may already be sending it tasks.
    stopped=${live[0]}
    wait_for "$out.executor-0.err" "executor registered" 60
    kill -STOP "$stopped"
  fi
  local job_start= next
  next=$(awk -v s="$kill_first" 'BEGIN { printf "%d", s * 1000 }')
  while kill -0 "$driver" 2>/dev/null; do
    if [ "$mode" = chaos ]; then
      if [ -z "$job_start" ] && grep -q "job started" "$out.err"; then job_start=$(now_ms); fi
      if [ -n "$job_start" ] && [ $(($(now_ms) - job_start)) -ge "$next" ]; then
        kill_one
        next=$((next + $(awk -v s="$kill_every" 'BEGIN { printf "%d", s * 1000 }')))
      fi
    fi
    sleep 0.05
  done
  local rc=0
  wait "$driver" || rc=$?
  elapsed=$(awk -v a="$t0" -v b="$(now_ms)" 'BEGIN { printf "%.2f", (b - a) / 1000 }')
  [ -n "$stopped" ] && kill -CONT "$stopped" 2>/dev/null
  for p in "${live[@]}"; do
    kill -KILL "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
  done
  if [ "$rc" -ne 0 ]; then
    echo "$job $mode: the driver exited with $rc:"
    tail -30 "$out.err"
    failed=1
    return 1
  fi
}

# counts JOB-MODE: "E lost, R retried, C recomputed, S speculative, T task
# attempts" from the driver's log: `executor lost` and `task failed;
# retrying` lines, and the job summary (`ctx.last_job()` at
# RIFFLE_LOG=info) with its `faults:` line (tasks launched by stage
# attempts after the first are recomputed).
counts() {
  local log="$tmp/$1.err"
  local lost retried
  lost=$(grep -c "executor lost" "$log" || true)
  retried=$(grep -c "task failed; retrying" "$log" || true)
  awk -v lost="$lost" -v retried="$retried" '
    /job: [0-9]+ stages, [0-9]+ tasks/ {
      for (i = 1; i <= NF; i++) if ($i == "tasks,") tasks += $(i - 1)
    }
    /^faults: / {
      for (i = 1; i <= NF; i++) {
        if ($i == "recomputed") recomputed += $(i - 1)
        if ($i == "speculative,") speculative += $(i - 1)
      }
    }
    END { printf "%d lost, %d retried, %d recomputed, %d speculative, %d task attempts", lost, retried, recomputed, speculative, tasks }
  ' "$log"
}

failed=0
# report JOB MODE TARGET: the run's figures, its answer checked against the
# fault-free one, and its slowdown against the target.
report() {
  local answer="same answer"
  if ! cmp -s "$tmp/$1-fault-free.out" "$tmp/$1-$2.out"; then
    failed=1
    answer="ANSWER DIFFERS"
    diff "$tmp/$1-fault-free.out" "$tmp/$1-$2.out" | head
  fi
  local what=$2
  [ "$2" = chaos ] && what="chaos ($kills executors killed)"
  [ "$2" = straggler ] && what="straggler (RIFFLE_SPECULATION=1, 1 of $size executors stopped)"
  echo "$1 $what: $elapsed s ($(counts "$1-$2")), $answer; slowdown" \
    "$(awk -v a="$elapsed" -v b="$base" 'BEGIN { printf "%.2fx", a / b }') (target < $3)"
}

echo "cluster: driver + $size executors (--cores 1) on 127.0.0.1; seed $seed, a kill every $kill_every s from $kill_first s after the job started"
for job in wordcount cloudfront; do
  if ! cluster_run "$job" fault-free; then continue; fi
  base=$elapsed
  echo "$job fault-free: $base s ($(counts "$job-fault-free"))"
  if cluster_run "$job" chaos; then report "$job" chaos 2x; fi
  if cluster_run "$job" straggler; then report "$job" straggler 1.5x; fi
done
[ "$failed" -eq 0 ] || { echo "FAILED: a job failed or an answer differed"; exit 1; }

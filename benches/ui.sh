#!/usr/bin/env bash
# Cost of the web UI and the event log (issue 10: under 3%). Each workload
# runs on local-cluster[2,1] twice per round, alternating: with the UI off
# (RIFFLE_UI=0, no event log) and with the UI on, one headless Chromium
# connected to it (benches/ui_watch.py, on the jobs page, which refetches
# on every live update) and the event log written. Best of REPEAT rounds
# per side; the ratio is on / off.
#
#   bash benches/ui.sh [LINES] [REPEAT]     (default 4,600,000 lines, 3)
source "$(dirname "$0")/common.sh"
repeat=${2:-3}
bash scripts/install-test-deps.sh

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# once MODE NAME CMD... : prints the wall seconds of one run (for noop,
# the tasks/s the job reports instead).
once() {
  local mode=$1 name=$2; shift 2
  local out="$tmp/$name-$mode" watcher=
  if [ "$mode" = on ]; then
    local port; port=$(free_port)
    rm -rf "$tmp/logs"
    python3 benches/ui_watch.py "http://127.0.0.1:$port/" >"$tmp/watch.log" 2>&1 &
    watcher=$!
    # The browser's own start-up is not the UI's cost: wait for it.
    for _ in $(seq 600); do grep -q ready "$tmp/watch.log" && break; sleep 0.1; done
    grep -q ready "$tmp/watch.log" || { echo "the browser did not start: $(cat "$tmp/watch.log")" >&2; exit 1; }
    export RIFFLE_UI=1 RIFFLE_UI_PORT=$port RIFFLE_EVENT_LOG="$tmp/logs"
  else
    export RIFFLE_UI=0
    unset RIFFLE_UI_PORT RIFFLE_EVENT_LOG
  fi
  if [ "$name" = noop ]; then
    # The job waits (--start-on-stdin) until the browser has the jobs
    # page open and its live stream connected: the cost measured is a
    # connected browser's, not the page load's, which in a sub-second
    # job would otherwise land on the job.
    rm -f "$tmp/go"; mkfifo "$tmp/go"
    run "$out" "$@" <"$tmp/go" >"$tmp/secs" &
    local job=$!
    exec 3>"$tmp/go"
    if [ "$mode" = on ]; then
      for _ in $(seq 600); do grep -q connected "$tmp/watch.log" && break; sleep 0.1; done
    fi
    echo go >&3
    exec 3>&-
    wait "$job"
    read -r secs _ <"$tmp/secs"
  else
    read -r secs _ < <(run "$out" "$@")
  fi
  if [ -n "$watcher" ]; then
    kill "$watcher" 2>/dev/null; wait "$watcher" 2>/dev/null || true
    grep -q connected "$tmp/watch.log" || { echo "$name: the browser never connected: $(cat "$tmp/watch.log")" >&2; exit 1; }
    ls "$tmp/logs"/app-* >/dev/null || { echo "$name: no event log" >&2; exit 1; }
  fi
  if [ "$name" = noop ]; then
    grep -o '[0-9]* tasks/s' "$out.err" | cut -d' ' -f1
  else
    echo "$secs"
  fi
}

ex=$target/release/examples
for name in wordcount cloudfront noop; do
  case $name in
    wordcount) cmd=("$ex/wordcount" --master 'local-cluster[2,1]' --top 20 "$data") ;;
    cloudfront) cmd=("$ex/cloudfront" --master 'local-cluster[2,1]' "$data") ;;
    noop) cmd=("$ex/jobs" --master 'local-cluster[2,1]' --start-on-stdin noop 2000) ;;
  esac
  best_off= best_on=
  for _ in $(seq "$repeat"); do
    off=$(once off "$name" "${cmd[@]}")
    on=$(once on "$name" "${cmd[@]}")
    if [ "$name" = noop ]; then # higher is better
      best_off=$(awk -v a="$off" -v b="${best_off:-0}" 'BEGIN { print (a > b) ? a : b }')
      best_on=$(awk -v a="$on" -v b="${best_on:-0}" 'BEGIN { print (a > b) ? a : b }')
    else
      best_off=$(awk -v a="$off" -v b="${best_off:-1e9}" 'BEGIN { print (a < b) ? a : b }')
      best_on=$(awk -v a="$on" -v b="${best_on:-1e9}" 'BEGIN { print (a < b) ? a : b }')
    fi
  done
  if [ "$name" != noop ]; then same "$tmp/$name-off" "$tmp/$name-on" "$name"; fi
  if [ "$name" = noop ]; then
    awk -v off="$best_off" -v on="$best_on" 'BEGIN {
      printf "%-10s UI off %6.0f tasks/s | UI on + browser + event log %6.0f tasks/s | cost %+.1f%% (target < 3%%)\n",
        "2000 no-op", off, on, (off / on - 1) * 100 }'
  else
    awk -v n="$name" -v off="$best_off" -v on="$best_on" 'BEGIN {
      printf "%-10s UI off %6.2f s | UI on + browser + event log %6.2f s | cost %+.1f%% (target < 3%%)\n",
        n, off, on, (on / off - 1) * 100 }'
  fi
done

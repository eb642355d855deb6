#!/usr/bin/env bash
# Runs the CloudFront report across three "hosts": network namespaces with
# their own addresses on a private bridge. The driver and an S3-compatible
# server (moto_server) run in one, an executor in each of the two others.
# The shuffle goes through S3; the input files are read from the shared
# filesystem (as from an NFS mount).
#
#   sudo bash scripts/multihost-demo.sh [LINES]
#
# Needs root and iproute2. Everything it creates is removed on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "run as root (network namespaces)" >&2; exit 1; }
command -v ip >/dev/null || { echo "needs iproute2 (ip)" >&2; exit 1; }
lines=${1:-400000}
target=${CARGO_TARGET_DIR:-target}
bash scripts/install-test-deps.sh
cargo build --release -q --bin riffle --example cloudfront
bin="$target/release/examples/cloudfront"

work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for ns in rf-driver rf-exec1 rf-exec2; do ip netns del "$ns" 2>/dev/null || true; done
  ip link del rf-br 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# A bridge in the root namespace and one veth pair per host.
ip link add rf-br type bridge
ip link set rf-br up
i=1
for ns in rf-driver rf-exec1 rf-exec2; do
  ip netns add "$ns"
  ip link add "veth-$ns" type veth peer name eth0 netns "$ns"
  ip link set "veth-$ns" master rf-br up
  ip netns exec "$ns" ip addr add "10.77.0.$i/24" dev eth0
  ip netns exec "$ns" ip link set eth0 up
  ip netns exec "$ns" ip link set lo up
  i=$((i + 1))
done
echo "hosts: driver 10.77.0.1, executors 10.77.0.2 and 10.77.0.3"

"$target/release/riffle" gen cloudfront --lines "$lines" --files 4 --seed 11 --out "$work/logs" --gzip

# S3 on the driver host; every process finds it through AWS_* variables.
ip netns exec rf-driver moto_server -H 10.77.0.1 -p 9000 >"$work/moto.log" 2>&1 &
pids+=($!)
for _ in $(seq 50); do ip netns exec rf-driver bash -c '</dev/tcp/10.77.0.1/9000' 2>/dev/null && break; sleep 0.2; done
ip netns exec rf-driver bash -c 'exec 3<>/dev/tcp/10.77.0.1/9000; printf "PUT /riffle-demo HTTP/1.1\r\nHost: 10.77.0.1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n" >&3; head -1 <&3' >/dev/null
export AWS_ENDPOINT=http://10.77.0.1:9000 AWS_ALLOW_HTTP=true AWS_REGION=us-east-1 \
  AWS_ACCESS_KEY_ID=demo AWS_SECRET_ACCESS_KEY=demo
# Listening on a non-loopback address requires a shared secret.
export RIFFLE_SECRET
RIFFLE_SECRET=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')

for n in 2 3; do
  ip netns exec "rf-exec$((n - 1))" "$bin" --executor --driver http://10.77.0.1:7077 \
    --bind "10.77.0.$n:7078" --cores 1 2>"$work/exec$n.log" &
  pids+=($!)
done

echo "== CloudFront report on 2 executors over the network"
start=$(date +%s.%N)
ip netns exec rf-driver env RIFFLE_MIN_EXECUTORS=2 RIFFLE_SHUFFLE_STORE=s3://riffle-demo/shuffle \
  "$bin" --master riffle://10.77.0.1:7077 "$work/logs" | tee "$work/cluster.out"
end=$(date +%s.%N)
echo "== the same report embedded, for comparison"
"$bin" --master 'local[2]' "$work/logs" 2>/dev/null >"$work/local.out"
if cmp -s "$work/cluster.out" "$work/local.out"; then
  awk -v s="$start" -v e="$end" 'BEGIN { printf "identical answers; cluster run took %.2f s\n", e - s }'
else
  echo "answers differ"; diff "$work/cluster.out" "$work/local.out"; exit 1
fi

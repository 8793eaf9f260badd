#!/usr/bin/env bash
# Appends per second through the gRPC endpoint (KurrentDB's Node.js and Python
# clients) and over HTTP (`eventfold bench http`) against one server, one after the
# other in one run, 64 appends in flight each.
# Usage: bench/grpc-vs-http.sh DATA_DIR PYTHON NODE_DIR [SECONDS]
#   DATA_DIR  a directory on the disk to measure (DATA_DIR/bench-grpc is replaced)
#   PYTHON    a Python with kurrentdbclient installed
#   NODE_DIR  a directory with node_modules/@kurrent/kurrentdb-client
set -euo pipefail
cd "$(dirname "$0")/.."
data="$1/bench-grpc"
python="$2"
node_dir="$3"
seconds="${4:-10}"
rm -rf "$data"
cargo build --release --quiet
log="$(mktemp)"
target/release/eventfold serve --data "$data" --listen 127.0.0.1:0 --grpc-listen 127.0.0.1:0 >"$log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null; rm -f "$log"' EXIT
for _ in $(seq 1 100); do
  grep -q "gRPC listening" "$log" && break
  sleep 0.1
done
http="$(sed -n 's/^eventfold listening on \(http:[^ ]*\).*/\1/p' "$log")"
grpc="$(sed -n 's/^eventfold gRPC listening on \([^ ]*\).*/\1/p' "$log")"
echo "gRPC, KurrentDB's Node.js client (64 calls in flight in one process):"
KURRENTDB_NODE_DIR="$node_dir" node bench/grpc_append_node.cjs "kurrentdb://$grpc?tls=false" "$seconds" 64
echo "gRPC, KurrentDB's Python client (64 calls in flight: 8 processes x 8 threads):"
"$python" bench/grpc_append.py "kurrentdb://$grpc?tls=false" "$seconds" 8 8
echo "HTTP, eventfold bench http (64 connections):"
target/release/eventfold bench http --server "$http" --seconds "$seconds" --json 2>/dev/null

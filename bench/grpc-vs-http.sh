#!/usr/bin/env bash
# Appends per second through the gRPC endpoint (KurrentDB's Python client) and over
# HTTP (`eventfold bench http`) against one server, one after the other in one run.
# Usage: bench/grpc-vs-http.sh DATA_DIR PYTHON [SECONDS]
#   DATA_DIR  a directory on the disk to measure (DATA_DIR/bench-grpc is replaced)
#   PYTHON    a Python with kurrentdbclient installed
set -euo pipefail
cd "$(dirname "$0")/.."
data="$1/bench-grpc"
python="$2"
seconds="${3:-10}"
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
echo "gRPC, KurrentDB's Python client (64 calls in flight: 8 processes x 8 threads):"
"$python" bench/grpc_append.py "kurrentdb://$grpc?tls=false" "$seconds" 8 8
echo "HTTP, eventfold bench http (64 connections):"
target/release/eventfold bench http --server "$http" --seconds "$seconds" --json 2>/dev/null

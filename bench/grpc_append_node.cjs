// Appends per second through eventfold's gRPC endpoint with KurrentDB's official
// Node.js client: CALLS append loops in one process, each appending one 200-byte JSON
// event per call to a stream of its own, for SECONDS after one second of warm-up.
// Prints one JSON line. Usage: KURRENTDB_NODE_DIR=DIR node grpc_append_node.cjs URI
// [SECONDS] [CALLS] (DIR holds node_modules/@kurrent/kurrentdb-client).
const path = require("path");
const { KurrentDBClient, jsonEvent, ANY } = require(
  path.join(process.env.KURRENTDB_NODE_DIR, "node_modules", "@kurrent", "kurrentdb-client"),
);

async function main() {
  const [uri, seconds = "10", calls = "64"] = process.argv.slice(2);
  const client = KurrentDBClient.connectionString(uri);
  const data = { payload: "x".repeat(180) };
  const start = performance.now() + 1000;
  const end = start + Number(seconds) * 1000;
  const latencies = [];
  async function loop(n) {
    const stream = `bench-grpc-node-${n}-${Math.random().toString(16).slice(2)}`;
    for (;;) {
      const began = performance.now();
      if (began >= end) return;
      await client.appendToStream(stream, jsonEvent({ type: "Benched", data }), { streamState: ANY });
      if (began >= start) latencies.push(performance.now() - began);
    }
  }
  await Promise.all(Array.from({ length: Number(calls) }, (_, n) => loop(n)));
  await client.dispose();
  latencies.sort((a, b) => a - b);
  const at = (p) => Math.round(latencies[Math.min(latencies.length - 1, Math.floor(latencies.length * p))] * 100) / 100;
  console.log(JSON.stringify({
    client: "@kurrent/kurrentdb-client (Node.js)",
    concurrent_appends: Number(calls),
    seconds: Number(seconds),
    appends: latencies.length,
    appends_per_second: Math.round(latencies.length / Number(seconds)),
    latency_p50_ms: at(0.5),
    latency_p99_ms: at(0.99),
  }));
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});

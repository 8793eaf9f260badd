// KurrentDB's official Node.js client (@kurrent/kurrentdb-client), unmodified, against
// eventfold's gRPC endpoint (the connection string is the first argument): appends
// with expected revisions, reads, a catch-up subscription that turns live, a
// persistent subscription with ack and park, delete and tombstone. Every check throws
// on an answer the client does not expect; the last line printed is a JSON summary.
// The client is loaded from the directory KURRENTDB_NODE_DIR names (its node_modules).
const path = require("path");
const {
  KurrentDBClient,
  jsonEvent,
  ANY,
  NO_STREAM,
  START,
  END,
  BACKWARDS,
  FORWARDS,
  PARK,
  persistentSubscriptionToStreamSettingsFromDefaults,
  StreamDeletedError,
  StreamNotFoundError,
  WrongExpectedVersionError,
} = require(path.join(process.env.KURRENTDB_NODE_DIR, "node_modules", "@kurrent", "kurrentdb-client"));

function check(condition, what) {
  if (!condition) throw new Error(`check failed: ${what}`);
}

async function refused(call, errorClass, what) {
  try {
    await call();
  } catch (error) {
    check(error instanceof errorClass, `${what}: got ${error.constructor.name}: ${error.message}`);
    return;
  }
  throw new Error(`${what}: no error`);
}

async function collect(iterable) {
  const out = [];
  for await (const resolved of iterable) out.push(resolved.event);
  return out;
}

async function main() {
  const client = KurrentDBClient.connectionString(process.argv[2]);
  const id = Math.random().toString(16).slice(2);
  const stream = `order-${id}`;

  // Appends: two events at once, then a wrong expected revision, then one more.
  const first = await client.appendToStream(
    stream,
    [jsonEvent({ type: "Placed", data: { total: 12 } }), jsonEvent({ type: "Paid", data: { by: "card" } })],
    { streamState: NO_STREAM },
  );
  check(first.nextExpectedRevision === 1n, `revision after two events: ${first.nextExpectedRevision}`);
  await refused(
    () => client.appendToStream(stream, jsonEvent({ type: "Late", data: {} }), { streamState: 0n }),
    WrongExpectedVersionError,
    "a stale expected revision",
  );
  await client.appendToStream(stream, jsonEvent({ type: "Shipped", data: {} }), { streamState: 1n });

  // Reads: forwards, backwards, from a revision, $all, a stream that does not exist.
  const forwards = await collect(client.readStream(stream, { direction: FORWARDS, fromRevision: START }));
  check(forwards.map((e) => e.type).join() === "Placed,Paid,Shipped", `forwards: ${forwards.map((e) => e.type)}`);
  check(forwards[0].data.total === 12, "JSON data comes back parsed");
  const backwards = await collect(client.readStream(stream, { direction: BACKWARDS, fromRevision: END, maxCount: 2 }));
  check(backwards.map((e) => e.type).join() === "Shipped,Paid", `backwards: ${backwards.map((e) => e.type)}`);
  const fromOne = await collect(client.readStream(stream, { fromRevision: 1n, maxCount: 1 }));
  check(fromOne[0].type === "Paid", "from revision 1");
  const all = (await collect(client.readAll({ maxCount: 1000 }))).filter((e) => e.streamId === stream);
  check(all.length === 3, `$all holds the stream's three events: ${all.length}`);
  await refused(() => collect(client.readStream(`missing-${id}`)), StreamNotFoundError, "a missing stream");

  // A catch-up subscription: the three events, then one appended while subscribed.
  const subscription = client.subscribeToStream(stream, { fromRevision: START });
  const seen = [];
  for await (const resolved of subscription) {
    seen.push(resolved.event.type);
    if (seen.length === 3) {
      await client.appendToStream(stream, jsonEvent({ type: "Delivered", data: {} }), { streamState: 2n });
    }
    if (seen.length === 4) break;
  }
  await subscription.unsubscribe();
  check(seen.join() === "Placed,Paid,Shipped,Delivered", `subscription: ${seen}`);

  // A persistent subscription: ack three, park one; the parked one is counted.
  const group = `fulfilment-${id}`;
  await client.createPersistentSubscriptionToStream(
    stream,
    group,
    persistentSubscriptionToStreamSettingsFromDefaults({ startFrom: START }),
  );
  const consumer = client.subscribeToPersistentSubscriptionToStream(stream, group);
  const handled = [];
  for await (const resolved of consumer) {
    if (resolved.event.type === "Paid") {
      await consumer.nack(PARK, "card declined", resolved);
    } else {
      await consumer.ack(resolved);
      handled.push(resolved.event.type);
    }
    if (handled.length === 3) break;
  }
  await consumer.unsubscribe();
  check(handled.join() === "Placed,Shipped,Delivered", `persistent: ${handled}`);
  const info = await client.getPersistentSubscriptionToStreamInfo(stream, group);
  check(info.groupName === group, `info names the group: ${info.groupName}`);
  await client.deletePersistentSubscriptionToStream(stream, group);

  // Delete, then tombstone.
  await client.deleteStream(stream, { expectedRevision: ANY });
  await refused(() => collect(client.readStream(stream)), StreamNotFoundError, "a deleted stream");
  await client.appendToStream(stream, jsonEvent({ type: "Reopened", data: {} }), { streamState: ANY });
  await client.tombstoneStream(stream, { expectedRevision: ANY });
  await refused(
    () => client.appendToStream(stream, jsonEvent({ type: "Again", data: {} }), { streamState: ANY }),
    StreamDeletedError,
    "an append to a tombstoned stream",
  );

  await client.dispose();
  console.log(JSON.stringify({ stream, seen, handled }));
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});

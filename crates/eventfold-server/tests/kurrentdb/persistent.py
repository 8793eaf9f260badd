"""Persistent subscriptions through KurrentDB's Python client (URI: first argument):
a group on a stream and one on $all, consumers that ack, park and retry, the replay
of parked events, info, list, update and delete. Prints a JSON summary last."""
import json
import sys
import uuid

from harness import finish
from kurrentdbclient import KurrentDBClient, NewEvent, StreamState
from kurrentdbclient.exceptions import AlreadyExistsError, NotFoundError

client = KurrentDBClient(uri=sys.argv[1])
stream = "invoice-" + str(uuid.uuid4())
client.append_to_stream(
    stream,
    events=[NewEvent(type=f"Line{n}", data=json.dumps({"n": n}).encode()) for n in range(4)],
    current_version=StreamState.NO_STREAM,
)
client.append_to_stream("unrelated-" + str(uuid.uuid4()), events=[NewEvent(type="Noise", data=b"{}")], current_version=StreamState.NO_STREAM)

client.create_subscription_to_stream("billing", stream, message_timeout=5.0, max_retry_count=3)
try:
    client.create_subscription_to_stream("billing", stream)
except AlreadyExistsError:
    pass
else:
    raise AssertionError("a group was created twice")

# One consumer: acks Line0, Line1 and Line3, parks Line2.
subscription = client.read_subscription_to_stream("billing", stream, max_ack_delay=0.05)
handled = []
for event in subscription:
    assert event.stream_name == stream, event.stream_name
    if event.type == "Line2":
        subscription.nack(event, action="park")
    else:
        subscription.ack(event)
        handled.append(event.type)
    if len(handled) == 3:
        break
subscription.stop()
assert handled == ["Line0", "Line1", "Line3"], handled

info = client.get_subscription_info("billing", stream)
assert info.group_name == "billing" and info.event_source == stream, info
assert info.parked_message_count == 1, info.parked_message_count
assert info.max_retry_count == 3, info.max_retry_count

# The parked event comes back after a replay; a retry delivers it once more.
client.replay_parked_events("billing", stream)
subscription = client.read_subscription_to_stream("billing", stream, max_ack_delay=0.05)
replayed = []
for event in subscription:
    replayed.append((event.type, event.retry_count))
    if len(replayed) == 1:
        subscription.nack(event, action="retry")
    else:
        subscription.ack(event)
        break
subscription.stop()
assert [t for t, _ in replayed] == ["Line2", "Line2"], replayed
assert replayed[1][1] > replayed[0][1], replayed

# A group on $all, from the end: only what is appended after it was made.
client.create_subscription_to_all("audit", from_end=True)
client.append_to_stream(stream, events=[NewEvent(type="Paid", data=b"{}")], current_version=3)
subscription = client.read_subscription_to_all("audit", max_ack_delay=0.05)
for event in subscription:
    subscription.ack(event)
    break
subscription.stop()
assert event.type == "Paid" and event.stream_name == stream, event

groups = sorted((s.group_name, s.event_source) for s in client.list_subscriptions())
assert ("billing", stream) in groups and ("audit", "$all") in groups, groups
assert [s.group_name for s in client.list_subscriptions_to_stream(stream)] == ["billing"]

client.update_subscription_to_stream("billing", stream, max_retry_count=7)
assert client.get_subscription_info("billing", stream).max_retry_count == 7

client.delete_subscription("billing", stream)
try:
    client.get_subscription_info("billing", stream)
except NotFoundError:
    pass
else:
    raise AssertionError("a deleted group was found")
try:
    client.delete_subscription("billing", stream)
except NotFoundError:
    pass
else:
    raise AssertionError("a deleted group was deleted again")

finish({"stream": stream, "handled": handled, "groups": len(groups)}, client)

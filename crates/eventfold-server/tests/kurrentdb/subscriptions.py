"""Catch-up subscriptions that turn live, to a stream and to $all with a server-side
filter and checkpoints, through KurrentDB's Python client (URI: first argument).
Prints a JSON summary last."""
import sys
import uuid

from harness import finish
from kurrentdbclient import KurrentDBClient, NewEvent, StreamState
from kurrentdbclient.events import Checkpoint

client = KurrentDBClient(uri=sys.argv[1])
cart = "cart-" + str(uuid.uuid4())
other = "user-" + str(uuid.uuid4())
client.append_to_stream(cart, events=[NewEvent(type="Added", data=b"{}"), NewEvent(type="Added", data=b"{}")], current_version=StreamState.NO_STREAM)
client.append_to_stream(other, events=[NewEvent(type="Registered", data=b"{}") for _ in range(40)], current_version=StreamState.NO_STREAM)

# A stream: the two events there, then one appended while subscribed.
subscription = client.subscribe_to_stream(cart)
caught_up = [next(subscription).type, next(subscription).type]
client.append_to_stream(cart, events=NewEvent(type="CheckedOut", data=b"{}"), current_version=1)
live = next(subscription)
subscription.stop()
assert caught_up == ["Added", "Added"] and live.type == "CheckedOut" and live.stream_position == 2

# From a revision: only what comes after it.
subscription = client.subscribe_to_stream(cart, stream_position=1)
assert next(subscription).type == "CheckedOut"
subscription.stop()

# $all filtered to the cart's stream: its events and checkpoints, none of the 40 others;
# a checkpoint lets a subscriber resume without seeing the filtered events again.
subscription = client.subscribe_to_all(
    filter_include=[cart], filter_by_stream_name=True,
    include_checkpoints=True, window_size=5, checkpoint_interval_multiplier=2,
)
seen, checkpoints = [], []
for item in subscription:
    if isinstance(item, Checkpoint):
        checkpoints.append(item.commit_position)
    else:
        assert item.stream_name == cart, item.stream_name
        seen.append(item.type)
    if len(seen) == 3 and checkpoints:
        break
subscription.stop()
assert seen == ["Added", "Added", "CheckedOut"], seen

# $all from a position: live events after it, filtered by event type.
position = client.get_commit_position()
subscription = client.subscribe_to_all(commit_position=position, filter_include=["Shipped"])
client.append_to_stream(other, events=NewEvent(type="Renamed", data=b"{}"), current_version=39)
client.append_to_stream(cart, events=NewEvent(type="Shipped", data=b"{}"), current_version=2)
shipped = next(subscription)
subscription.stop()
assert shipped.type == "Shipped" and shipped.commit_position > position

finish({"seen": seen, "checkpoints": checkpoints, "shipped": shipped.commit_position}, client)

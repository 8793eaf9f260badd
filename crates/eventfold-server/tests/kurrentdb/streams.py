"""Appends, reads and wrong expected versions through KurrentDB's official Python
client, unmodified, against an eventfold gRPC endpoint (the URI is the first argument).
Every check raises on failure; the last line printed is a JSON summary for the test."""
import sys
import uuid

from harness import finish
from kurrentdbclient import KurrentDBClient, NewEvent, StreamState
from kurrentdbclient.exceptions import NotFoundError, WrongCurrentVersionError

client = KurrentDBClient(uri=sys.argv[1])
stream = "order-" + str(uuid.uuid4())

# One event (the Append call), then two at once (BatchAppend), one of them binary.
placed = NewEvent(type="OrderPlaced", data=b'{"total": 12}')
first = client.append_to_stream(stream, events=placed, current_version=StreamState.NO_STREAM)
paid = NewEvent(type="OrderPaid", data=b'{"by": "card"}', metadata=b'{"user": "u-1"}')
blob = NewEvent(type="Receipt", data=b"\x00\xff%PDF", content_type="application/octet-stream")
last = client.append_to_stream(stream, events=[paid, blob], current_version=0)
assert last > first > 0, (first, last)

# The same append again (same ids) is idempotent: nothing new, no error.
again = client.append_to_stream(stream, events=[paid, blob], current_version=0)
assert [e.type for e in client.get_stream(stream)] == ["OrderPlaced", "OrderPaid", "Receipt"]

# Wrong expected versions, through both calls.
for events, expected in (([NewEvent(type="Late", data=b"{}")], 0), (NewEvent(type="Late", data=b"{}"), 7)):
    try:
        client.append_to_stream(stream, events=events, current_version=expected)
    except WrongCurrentVersionError as error:
        assert "2" in str(error), error
    else:
        raise AssertionError("an append with a wrong expected version was taken")
try:
    client.append_to_stream(stream, events=NewEvent(type="Late", data=b"{}"), current_version=StreamState.NO_STREAM)
except WrongCurrentVersionError:
    pass
else:
    raise AssertionError("an append expecting no stream was taken")

events = client.get_stream(stream)
assert [e.stream_position for e in events] == [0, 1, 2]
assert events[0].data == b'{"total": 12}' and events[0].content_type == "application/json"
assert events[0].id == placed.id, (events[0].id, placed.id)
assert events[1].metadata == b'{"user": "u-1"}', events[1].metadata
assert events[2].data == b"\x00\xff%PDF" and events[2].content_type == "application/octet-stream"
assert events[2].commit_position == last, (events[2].commit_position, last)
assert events[0].recorded_at is not None

backwards = client.get_stream(stream, backwards=True, limit=2)
assert [e.type for e in backwards] == ["Receipt", "OrderPaid"], backwards
from_one = client.get_stream(stream, stream_position=1, limit=1)
assert [e.type for e in from_one] == ["OrderPaid"], from_one

everything = [e for e in client.read_all() if e.stream_name == stream]
assert [e.type for e in everything] == ["OrderPlaced", "OrderPaid", "Receipt"]
newest = client.read_all(backwards=True, limit=1)
assert [e.type for e in newest] == ["Receipt"], newest
assert client.get_commit_position() == last
after_first = [e.type for e in client.read_all(commit_position=events[1].commit_position) if e.stream_name == stream]
assert after_first == ["OrderPaid", "Receipt"], after_first

try:
    client.get_stream("missing-" + str(uuid.uuid4()))
except NotFoundError:
    pass
else:
    raise AssertionError("a stream that does not exist was read")

# Stream metadata, in KurrentDB's keys: kept as eventfold's, and applied by reads.
metadata, version = client.get_stream_metadata(stream)
assert metadata == {} and version == StreamState.NO_STREAM, (metadata, version)
client.set_stream_metadata(stream, metadata={"$maxCount": 2, "owner": "billing"}, current_version=StreamState.NO_STREAM)
metadata, version = client.get_stream_metadata(stream)
assert metadata == {"$maxCount": 2, "owner": "billing"} and version == 0, (metadata, version)
assert [e.type for e in client.get_stream(stream)] == ["OrderPaid", "Receipt"]
try:
    client.set_stream_metadata(stream, metadata={}, current_version=5)
except WrongCurrentVersionError:
    pass
else:
    raise AssertionError("metadata was set with a wrong expected version")

finish({"stream": stream, "types": [e.type for e in events], "last": last}, client)

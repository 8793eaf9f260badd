"""Delete and tombstone through KurrentDB's Python client (URI: first argument)."""
import sys
import uuid

from harness import finish
from kurrentdbclient import KurrentDBClient, NewEvent, StreamState
from kurrentdbclient.exceptions import FailedPreconditionError, NotFoundError, StreamIsDeletedError, WrongCurrentVersionError

client = KurrentDBClient(uri=sys.argv[1])
stream = "basket-" + str(uuid.uuid4())
client.append_to_stream(stream, events=[NewEvent(type="Filled", data=b"{}")], current_version=StreamState.NO_STREAM)

try:
    client.delete_stream(stream, current_version=5)
except WrongCurrentVersionError:
    pass
else:
    raise AssertionError("a delete with a wrong expected version was taken")

# A soft delete hides the stream; an append brings it back with the new event only.
client.delete_stream(stream, current_version=0)
try:
    client.get_stream(stream)
except NotFoundError:
    pass
else:
    raise AssertionError("a deleted stream was read")
client.append_to_stream(stream, events=[NewEvent(type="Refilled", data=b"{}")], current_version=StreamState.ANY)
assert [e.type for e in client.get_stream(stream)] == ["Refilled"]

# A tombstone is for good: reads and appends are refused.
client.tombstone_stream(stream, current_version=StreamState.ANY)
try:
    client.get_stream(stream)
except StreamIsDeletedError:
    pass
else:
    raise AssertionError("a tombstoned stream was read")
# Batched events come back as StreamIsDeletedError; the client reports a single
# event's refusal (the Append call) by its status, as it does KurrentDB's.
for events in ([NewEvent(type="Again", data=b"{}")], NewEvent(type="Again", data=b"{}")):
    try:
        client.append_to_stream(stream, events=events, current_version=StreamState.ANY)
    except StreamIsDeletedError:
        pass
    except FailedPreconditionError as error:
        assert "is deleted" in str(error), error
    else:
        raise AssertionError("a tombstoned stream was written")
finish({"stream": stream}, client)

"""Users and roles through KurrentDB's Python client, over TLS (the client sends
credentials only on secure connections). Arguments: the endpoint's host:port, the PEM
file of the certificate to trust, then the name and token of a writer, and of a reader
without write rights. Prints which calls were refused, and how, as JSON."""
import sys
import uuid

from harness import finish
from kurrentdbclient import KurrentDBClient, NewEvent, StreamState
from kurrentdbclient.exceptions import AccessDeniedError, UnauthenticatedError

address, certificate, writer, writer_token, reader, reader_token = sys.argv[1:7]
with open(certificate) as file:
    trusted = file.read()
stream = "note-" + str(uuid.uuid4())


def connect(credentials):
    return KurrentDBClient(uri=f"kurrentdb://{credentials}{address}", root_certificates=trusted)


client = connect(f"{writer}:{writer_token}@")
client.append_to_stream(stream, events=[NewEvent(type="Written", data=b"{}")], current_version=StreamState.NO_STREAM)
client.append_to_stream(stream, events=NewEvent(type="Again", data=b"{}"), current_version=0)
assert [e.type for e in client.get_stream(stream)] == ["Written", "Again"]

refused = {}
for name, credentials, call in (
    ("wrong_token", f"{writer}:not-the-token@", lambda c: c.get_stream(stream)),
    ("reader_appends", f"{reader}:{reader_token}@",
     lambda c: c.append_to_stream(stream, events=[NewEvent(type="Nope", data=b"{}")], current_version=StreamState.ANY)),
    ("reader_reads_all", f"{reader}:{reader_token}@", lambda c: list(c.read_all())),
):
    other = connect(credentials)
    try:
        call(other)
    except (UnauthenticatedError, AccessDeniedError) as error:
        refused[name] = type(error).__name__
    else:
        raise AssertionError(f"{name}: the call was let through")
    finally:
        other.close()
reader_client = connect(f"{reader}:{reader_token}@")
assert [e.type for e in reader_client.get_stream(stream)] == ["Written", "Again"]
finish(refused, reader_client, client)

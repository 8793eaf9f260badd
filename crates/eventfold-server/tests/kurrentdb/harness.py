"""What every script here shares: a failure is printed and ends the process, and
`finish` prints the summary and ends it, both without running finalizers: grpcio's
finalizers of calls a client left unfinished can deadlock at interpreter exit, which
would turn a result into a hang."""
import json
import os
import sys
import traceback


def _fail(kind, value, trace):
    traceback.print_exception(kind, value, trace)
    sys.stderr.flush()
    os._exit(1)


sys.excepthook = _fail


def finish(summary, *clients):
    """Closes `clients`, prints `summary` as the last line (JSON) and exits."""
    for client in clients:
        client.close()
    print(json.dumps(summary), flush=True)
    os._exit(0)

"""Appends per second through eventfold's gRPC endpoint with KurrentDB's official
Python client (`kurrentdbclient`): PROCESSES processes of THREADS threads, each thread
appending one 200-byte JSON event per call to a stream of its own, for SECONDS after
one second of warm-up. Prints one JSON line: appends, seconds, appends_per_second and
latency percentiles. Usage: grpc_append.py URI [SECONDS] [PROCESSES] [THREADS]."""
import json
import multiprocessing
import os
import sys
import threading
import time
import uuid

from kurrentdbclient import KurrentDBClient, NewEvent, StreamState

DATA = json.dumps({"payload": "x" * 180}).encode()


def worker(uri, seconds, threads, results):
    client = KurrentDBClient(uri=uri)
    start = time.monotonic() + 1.0
    end = start + seconds
    latencies = []
    lock = threading.Lock()

    def load():
        stream = f"bench-grpc-{uuid.uuid4()}"
        mine = []
        while True:
            began = time.monotonic()
            if began >= end:
                break
            client.append_to_stream(stream, events=NewEvent(type="Benched", data=DATA), current_version=StreamState.ANY)
            if began >= start:
                mine.append(time.monotonic() - began)
        with lock:
            latencies.extend(mine)

    pool = [threading.Thread(target=load) for _ in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    results.put(latencies)
    # Sent for sure before the process ends (the queue writes from a thread of its own).
    results.close()
    results.join_thread()
    client.close()
    # grpcio's finalizers can deadlock at exit; the results are sent.
    os._exit(0)


def main():
    uri = sys.argv[1]
    seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 10.0
    processes = int(sys.argv[3]) if len(sys.argv) > 3 else 8
    threads = int(sys.argv[4]) if len(sys.argv) > 4 else 8
    results = multiprocessing.Queue()
    pool = [
        multiprocessing.Process(target=worker, args=(uri, seconds, threads, results))
        for _ in range(processes)
    ]
    for process in pool:
        process.start()
    latencies = []
    for _ in pool:
        latencies.extend(results.get())
    for process in pool:
        process.join()
    latencies.sort()

    def percentile(p):
        return round(latencies[min(len(latencies) - 1, int(len(latencies) * p))] * 1000, 2) if latencies else None

    print(json.dumps({
        "client": "kurrentdbclient (Python)",
        "concurrent_appends": processes * threads,
        "seconds": seconds,
        "appends": len(latencies),
        "appends_per_second": round(len(latencies) / seconds),
        "latency_p50_ms": percentile(0.5),
        "latency_p99_ms": percentile(0.99),
    }))


if __name__ == "__main__":
    main()

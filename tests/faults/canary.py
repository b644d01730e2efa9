"""The fault suite's canary, a process of its own (so the attacker's threads in the test process
never delay its measurements): ordinary tool requests one after another on one keep-alive
connection, 30 before the attack for the unloaded time, then until its stdin closes.

    python canary.py PORT API_KEY BODY

Prints one JSON line when told to stop: ``{"unloaded", "latencies", "failures"}`` in seconds.
"""

from __future__ import annotations

import http.client
import statistics
import sys
import threading
import time

import orjson


def main() -> None:
    port, key, body = int(sys.argv[1]), sys.argv[2], sys.argv[3].encode()
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {key}"}
    failures: list[str] = []

    def one(connection: http.client.HTTPConnection) -> float:
        started = time.perf_counter()
        connection.request("POST", "/v1/chat/completions", body, headers)
        response = connection.getresponse()
        answer = orjson.loads(response.read())
        elapsed = time.perf_counter() - started
        if response.status != 200 or not answer["choices"][0]["message"].get("tool_calls"):
            failures.append(f"{response.status}: {answer}")
        return elapsed

    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    unloaded = statistics.median(one(connection) for _ in range(30))
    print("ready", flush=True)
    stop = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
    latencies: list[float] = []
    while not stop.is_set():
        try:
            latencies.append(one(connection))
        except (OSError, http.client.HTTPException) as error:
            failures.append(repr(error))
            connection.close()
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        stop.wait(0.005)
    print(orjson.dumps({"unloaded": unloaded, "latencies": latencies, "failures": failures}).decode(), flush=True)


if __name__ == "__main__":
    main()

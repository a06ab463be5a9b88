"""A worker: no port, just a line on stdout every second until stopped."""

import itertools
import signal
import sys
import time


def stop(signum: int, frame: object) -> None:
    print("worker stopping", flush=True)
    sys.exit(0)


signal.signal(signal.SIGTERM, stop)
for tick in itertools.count(1):
    print(f"worker tick {tick}", flush=True)
    time.sleep(1)

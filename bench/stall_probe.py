"""`python -m bench.stall_probe FILE`: a process of its own that asks to sleep 5 ms, over and
over, and appends to FILE every wake-up later than 50 ms past its time (wall-clock start and
lateness). Nothing else runs in it, so a late wake-up is the machine's doing: the CPU taken by
other processes (this machine is shared) or the hypervisor. The HTTP bench runs it beside each
measurement to tell the machine's stalls from the server's."""
from __future__ import annotations

import sys
import time

TICK_SECONDS = 0.005
LATE_SECONDS = 0.050


def main(path: str) -> None:
    while True:
        asked = time.perf_counter()
        wall = time.time()
        time.sleep(TICK_SECONDS)
        late = time.perf_counter() - asked - TICK_SECONDS
        if late >= LATE_SECONDS:
            with open(path, "a") as out:
                out.write(f"{wall:.4f} {late:.4f}\n")


if __name__ == "__main__":
    main(sys.argv[1])

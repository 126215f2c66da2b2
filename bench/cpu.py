"""CPU time spent per component during a benchmark phase, from /proc (Linux).

Latency under 20 closed-loop clients on a 2-core machine is mostly "how much CPU does one
request cost, everywhere": in the web workers, in the Slack stand-in, in PostgreSQL and in
the load generator itself. Those costs barely depend on what else the machine is doing, so
they are the figures to optimise and to compare between runs (docs/benchmarks.md); the
latencies are their consequence.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _stat(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # comm may hold spaces or parentheses: split after the last ')'
    return text[text.rindex(")") + 2 :].split()


def cpu_seconds(pid: int) -> float:
    """utime + stime of one process (all its threads)."""
    fields = _stat(pid)
    if fields is None:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICKS


def children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat(int(entry.name))
            if fields is not None and int(fields[1]) == pid:
                out.append(int(entry.name))
    return out


def postgres_backends() -> list[int]:
    """Every process named postgres on this machine (the server's backends and helpers)."""
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if Path(f"/proc/{entry.name}/comm").read_text().strip().startswith("postgres"):
                    out.append(int(entry.name))
            except OSError:
                pass
    return out


def machine_seconds() -> tuple[float, float]:
    """CPU seconds the whole machine has been busy since boot, summed over its cores (user,
    nice, system, irq, softirq: /proc/stat's first line), and those its hypervisor gave to
    other guests (steal). Busy time minus a benchmark's own processes' is what everyone else
    on this shared machine took meanwhile."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = values
    return (user + nice + system + irq + softirq) / _TICKS, steal / _TICKS


@dataclass
class CpuMeter:
    """Snapshot-and-diff of named groups of processes; a group is a function giving its pids
    now (processes may come and go between snapshots: PostgreSQL backends do)."""

    groups: dict[str, Callable[[], Iterable[int]]]

    def snapshot(self) -> dict[str, dict[int, float]]:
        return {name: {pid: cpu_seconds(pid) for pid in pids()} for name, pids in self.groups.items()}

    @staticmethod
    def spent(before: dict[str, dict[int, float]], after: dict[str, dict[int, float]]) -> dict[str, float]:
        """CPU seconds each group used between two snapshots (a process that exited in
        between is lost; one that started counts from zero)."""
        return {
            name: sum(max(0.0, seconds - before.get(name, {}).get(pid, 0.0)) for pid, seconds in now.items())
            for name, now in after.items()
        }

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


def run_queue_seconds(pid: int) -> float:
    """Seconds the threads of one process spent runnable but waiting for a CPU, summed over
    its threads now alive (/proc/PID/task/*/schedstat, second field: Linux's sched_info run
    delay). A thread waiting for the GIL or for I/O sleeps and is not counted: this is the
    time the machine's other work kept it from running."""
    total = 0
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return 0.0
    for task in tasks:
        try:
            total += int((task / "schedstat").read_text().split()[1])
        except (OSError, IndexError, ValueError):
            pass
    return total / 1e9


def autogroup_seconds() -> dict[str, float]:
    """CPU seconds used so far by the processes alive now, summed by scheduler autogroup
    (/proc/PID/autogroup; empty where the kernel has none); PostgreSQL's processes, whose
    work is partly the benchmark's, under "postgres" whatever their group."""
    out: dict[str, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            group = (entry / "autogroup").read_text().split()[0]
            if (entry / "comm").read_text().startswith("postgres"):
                group = "postgres"
        except (OSError, IndexError):
            continue
        out[group] = out.get(group, 0.0) + cpu_seconds(int(entry.name))
    return out


#: a session whose processes kept at least this many cores busy over a run counts as busy
BUSY_CORES = 0.1


@dataclass(frozen=True)
class Sessions:
    """How the machine's CPUs were shared during a run. With autogroups on
    (/proc/sys/kernel/sched_autogroup_enabled), Linux shares the CPUs fairly between sessions
    first, and between a session's threads only within its share (sched(7), "The autogroup
    feature"): a benchmark's server, client and stand-in, started from one session, get
    together one session's share of a machine that other sessions keep busy, whatever their
    nice values. On this shared machine every engineer's shell is a session."""

    #: cores the bench's own session used on average (its servers, client, stand-in, probe)
    own_cores: float
    #: other sessions that kept at least BUSY_CORES busy, and the cores they used together
    busy_others: int
    others_cores: float

    @classmethod
    def between(cls, before: dict[str, float], after: dict[str, float], seconds: float) -> Sessions:
        own = own_autogroup()
        used = {group: (after[group] - before.get(group, 0.0)) / seconds for group in after}
        others = [cores for group, cores in used.items() if group not in (own, "postgres")]
        return cls(used.get(own or "", 0.0), sum(1 for cores in others if cores >= BUSY_CORES), sum(max(0.0, c) for c in others))


def own_autogroup() -> str | None:
    try:
        return Path("/proc/self/autogroup").read_text().split()[0]
    except (OSError, IndexError):
        return None


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


@dataclass
class CpuMeter:
    """Snapshot-and-diff of named groups of processes; a group is a function giving its pids
    now (processes may come and go between snapshots: PostgreSQL backends do). `measure` is
    what is counted per process: CPU seconds, or `run_queue_seconds`."""

    groups: dict[str, Callable[[], Iterable[int]]]
    measure: Callable[[int], float] = cpu_seconds

    def snapshot(self) -> dict[str, dict[int, float]]:
        return {name: {pid: self.measure(pid) for pid in pids()} for name, pids in self.groups.items()}

    @staticmethod
    def spent(before: dict[str, dict[int, float]], after: dict[str, dict[int, float]]) -> dict[str, float]:
        """CPU seconds each group used between two snapshots (a process that exited in
        between is lost; one that started counts from zero)."""
        return {
            name: sum(max(0.0, seconds - before.get(name, {}).get(pid, 0.0)) for pid, seconds in now.items())
            for name, now in after.items()
        }

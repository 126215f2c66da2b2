"""Two revisions' HTTP hot paths, side by side:
`python -m bench.side_by_side BEFORE [AFTER] [--pairs 6] [--backends sqlite,postgresql]`.

On these shared, drifting machines a figure measured an hour apart says little; the same
suite run on both revisions alternately, many times, says whether a change is beyond noise.
Each revision is checked out in a temporary git worktree and measured by its own
`python -m bench --only http` (its own code, migrations and harness) with one client and one
round per run; the runs alternate, the first revision of each pair swapped every other pair
so neither always runs on the warmer machine. The report is each path's p50 and its ratio to
the floor measured in the same run: median of the runs (lowest–highest). AFTER defaults to
the working tree as it is now (uncommitted changes included), so a change can be measured
before it is committed.

Only the HTTP suite: its table has kept its shape across revisions. Suites whose harness
changed between the two revisions would compare harnesses, not code.
"""
from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from bench.common import REPO_ROOT

#: the working tree as it is, rather than a commit
WORKING_TREE = "WORKTREE"

#: a row of the one-client table: backend, path, then "p50 (range)" and "ratio (range)"
_ROW = re.compile(r"^\| (sqlite|postgresql) \| ([^|]+?) \| ([\d.]+) \([^)]*\) \| ([\d.]+|1) ")


@dataclass(frozen=True)
class Figure:
    backend: str
    path: str
    p50_ms: float
    p50_x_floor: float


def one_client_figures(markdown: str) -> list[Figure]:
    """The rows of the HTTP section's one-client table (the floor's ratio is 1)."""
    figures: list[Figure] = []
    table = False
    for line in markdown.splitlines():
        if line.startswith("### "):
            table = line.startswith("### 1 client")
            continue
        match = _ROW.match(line) if table else None
        if match:
            figures.append(Figure(match[1], match[2].strip(), float(match[3]), float(match[4])))
    return figures


def schedule(revisions: tuple[str, str], pairs: int) -> list[tuple[int, str]]:
    """(pair, revision) in the order they run: A B, B A, A B …"""
    order: list[tuple[int, str]] = []
    for pair in range(pairs):
        first, second = revisions if pair % 2 == 0 else revisions[::-1]
        order += [(pair, first), (pair, second)]
    return order


def summary(runs: Iterable[tuple[str, list[Figure]]], revisions: tuple[str, str]) -> str:
    """A markdown table: per backend and path, each revision's median (lowest–highest)."""
    by_key: dict[tuple[str, str], dict[str, list[Figure]]] = defaultdict(lambda: defaultdict(list))
    for revision, figures in runs:
        for figure in figures:
            by_key[(figure.backend, figure.path)][revision].append(figure)

    def cell(values: list[float], digits: int) -> str:
        if not values:
            return "–"
        return f"{statistics.median(values):.{digits}f} ({min(values):.{digits}f}–{max(values):.{digits}f})"

    before, after = revisions
    lines = [
        f"| backend | path | p50 × floor, {before} | p50 × floor, {after} | p50 ms, {before} | p50 ms, {after} | runs |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for (backend, path), per_revision in by_key.items():
        a, b = per_revision.get(before, []), per_revision.get(after, [])
        lines.append(
            f"| {backend} | {path} | {cell([f.p50_x_floor for f in a], 2)} | {cell([f.p50_x_floor for f in b], 2)} "
            f"| {cell([f.p50_ms for f in a], 1)} | {cell([f.p50_ms for f in b], 1)} | {len(a)} / {len(b)} |"
        )
    return "\n".join(lines) + "\n"


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=REPO_ROOT, check=True, capture_output=True, text=True).stdout.strip()


def _checkout(revision: str, into: Path) -> Path:
    """A worktree of `revision` (the working tree itself for WORKING_TREE)."""
    if revision == WORKING_TREE:
        return REPO_ROOT
    _git("worktree", "add", "--detach", str(into), _git("rev-parse", "--verify", f"{revision}^{{commit}}"))
    return into


def measure(tree: Path, *, backends: str, count: int, output: Path) -> list[Figure]:
    env = {
        **os.environ,
        "BENCH_CLIENTS": "1",
        "BENCH_ROUNDS": "1",
        # the tree's own bot/ and bench/, not the package installed in the virtualenv
        "PYTHONPATH": str(tree),
    }
    subprocess.run(
        [sys.executable, "-m", "bench", "--only", "http", "--backends", backends, "--count", str(count), "--output", str(output)],
        cwd=tree, env=env, check=True, stdout=subprocess.DEVNULL,
    )
    return one_client_figures(output.read_text())


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.side_by_side", description=__doc__.split("\n\n")[0])
    parser.add_argument("before", help="a git revision")
    parser.add_argument("after", nargs="?", default=WORKING_TREE, help=f"a git revision (default: the working tree, {WORKING_TREE})")
    parser.add_argument("--pairs", type=int, default=6)
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--count", type=int, default=150, help="requests per path and run")
    args = parser.parse_args()
    revisions = (args.before, args.after)
    with tempfile.TemporaryDirectory(prefix="impbot-side-by-side-") as scratch:
        trees: dict[str, Path] = {}
        try:
            for index, revision in enumerate(revisions):
                trees[revision] = _checkout(revision, Path(scratch) / f"tree-{index}")
            runs: list[tuple[str, list[Figure]]] = []
            for pair, revision in schedule(revisions, args.pairs):
                output = Path(scratch) / f"{len(runs)}.md"
                runs.append((revision, measure(trees[revision], backends=args.backends, count=args.count, output=output)))
                print(f"pair {pair + 1}/{args.pairs}: {revision} measured", file=sys.stderr)
        finally:
            for tree in trees.values():
                if tree != REPO_ROOT:
                    _git("worktree", "remove", "--force", str(tree))
    print(summary(runs, revisions))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""`python -m bench [--backends sqlite,postgresql] [--count N] [--only http,…]`: runs the
benchmarks and rewrites docs/benchmarks.md with the machine, the date and the figures."""
from __future__ import annotations

import argparse
import datetime as dt
import importlib
from pathlib import Path

from bench.common import REPO_ROOT, machine

#: (name, module): each module has `run(*, backends, count) -> markdown section`
SUITES = [
    ("http", "bench.http_bench"),
    ("audit", "bench.audit_bench"),
    ("digest", "bench.digest_bench"),
    ("kit", "bench.kit_bench"),
    ("front_door", "bench.front_door_bench"),
]


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--count", type=int, default=1000, help="requests per HTTP path")
    parser.add_argument("--only", default="", help="comma-separated suite names")
    parser.add_argument("--output", type=Path, default=REPO_ROOT / "docs" / "benchmarks.md")
    args = parser.parse_args()
    backends = [b for b in args.backends.split(",") if b]
    only = {s for s in args.only.split(",") if s}
    sections = []
    for name, module_name in SUITES:
        if only and name not in only:
            continue
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:
                continue
            raise
        sections.append(module.run(backends=backends, count=args.count))
    now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    header = (
        "# Benchmarks\n\n"
        f"Made by `./scripts/bench` ({'only ' + ', '.join(sorted(only)) if only else 'all suites'}) on {now}.\n\n"
        f"Machine: {machine()}.\n\n"
    )
    args.output.write_text(header + "\n".join(sections))
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

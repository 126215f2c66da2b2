"""`python -m bench [--backends sqlite,postgresql] [--count N] [--only http,…]`: runs the
benchmarks and rewrites their sections of docs/benchmarks.md (bench/report.py), keeping the
sections of the suites not run."""
from __future__ import annotations

import argparse
import datetime as dt
import importlib
from pathlib import Path

from bench import report
from bench.common import REPO_ROOT, machine


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--count", type=int, default=200, help="requests per HTTP path and run")
    parser.add_argument("--only", default="", help=f"comma-separated suite names: {', '.join(report.NAMES)}")
    parser.add_argument("--output", type=Path, default=REPO_ROOT / "docs" / "benchmarks.md")
    args = parser.parse_args()
    backends = [b for b in args.backends.split(",") if b]
    only = {s for s in args.only.split(",") if s}
    unknown = only - set(report.NAMES)
    if unknown:
        parser.error(f"unknown suite(s): {', '.join(sorted(unknown))}")
    sections = {}
    for name, module_name, *_ in report.SUITES:
        if only and name not in only:
            continue
        module = importlib.import_module(module_name)
        section = module.run(backends=backends, count=args.count)
        sections[name] = report.stamp(section, name=name, machine=machine(), now=dt.datetime.now(dt.timezone.utc))
        # written after each suite, so a later suite's failure loses nothing already measured
        report.write(args.output, sections)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

from __future__ import annotations

from bench.side_by_side import Figure, one_client_figures, schedule, summary

SECTION = """## HTTP hot paths against the floor (`bench/http_bench.py`)

### 1 client: latency as a person feels it

| backend | path | p50 ms | p50 × floor | p99 ms | p99 × floor | goal (p50 and p99) | met |
| --- | --- | ---: | ---: | ---: | ---: | ---: | --- |
| sqlite | floor (Bolt + Flask, ack after views.open) | 1.6 (1.6–1.6) | 1 | 2.1 (2.1–2.1) | 1 | – | – |
| sqlite | link redemption (POST) | 9.8 (9.8–9.8) | 6.32 (6.32–6.32) | 13.9 (13.9–13.9) | 6.72 (6.72–6.72) | ≤ 3 × floor | **no** (p50) (p99) |
| postgresql | approve click | 20.6 (18.2–21.2) | 12.86 (12.41–13.26) | 30.0 (29.0–31.0) | 14.00 (13.00–15.00) | ≤ 4 × floor | **no** (p50) (p99) |

### 20 clients: saturation (no goal; outliers)

| backend | path | p50 ms | p50 × floor | p99 ms | p99 × floor | max ms per round | requests over 250 ms | web CPU ms/request | outbox drained after |
| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |
| sqlite | link redemption (POST) | 89.7 (89.7–89.7) | 5.70 (5.70–5.70) | 150.6 (150.6–150.6) | 5.16 (5.16–5.16) | 169 | 0 | 5.93 | ≤ 0.6 s |
"""


def test_only_the_one_client_table_is_read():
    assert one_client_figures(SECTION) == [
        Figure("sqlite", "floor (Bolt + Flask, ack after views.open)", 1.6, 1.0),
        Figure("sqlite", "link redemption (POST)", 9.8, 6.32),
        Figure("postgresql", "approve click", 20.6, 12.86),
    ]


def test_a_section_without_the_table_gives_nothing():
    assert one_client_figures("## HTTP\n\n| sqlite | ack | 1.0 (1.0–1.0) | 2.00 (2.00–2.00) |\n") == []


def test_the_revisions_alternate_and_swap_which_goes_first_every_other_pair():
    assert schedule(("A", "B"), 3) == [(0, "A"), (0, "B"), (1, "B"), (1, "A"), (2, "A"), (2, "B")]


def test_the_summary_gives_each_revisions_median_and_range():
    runs = [
        ("A", [Figure("sqlite", "approve click", 12.0, 8.0)]),
        ("B", [Figure("sqlite", "approve click", 10.0, 6.0)]),
        ("B", [Figure("sqlite", "approve click", 11.0, 7.0)]),
        ("A", [Figure("sqlite", "approve click", 13.0, 9.0)]),
        ("A", [Figure("sqlite", "approve click", 14.0, 10.0)]),
    ]
    table = summary(runs, ("A", "B"))
    assert "| sqlite | approve click | 9.00 (8.00–10.00) | 6.50 (6.00–7.00) | 13.0 (12.0–14.0) | 10.5 (10.0–11.0) | 3 / 2 |" in table

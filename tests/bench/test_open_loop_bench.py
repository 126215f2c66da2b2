"""The open-loop suite's arithmetic: the arrivals of a run, which prepared request each one
sends, and the knee read off the p99 per rate."""
from __future__ import annotations

from collections import Counter

from bench.http_bench import ACK, APPROVE, REDEEM
from bench.loadgen import Request
from bench.open_loop_bench import Knee, arrivals, assign, knee


def test_a_run_mixes_the_three_paths_and_is_the_same_for_the_same_seed() -> None:
    schedule = arrivals(50, 60, seed=1)
    assert schedule == arrivals(50, 60, seed=1)
    assert schedule != arrivals(50, 60, seed=2)
    kinds = Counter(kind for _, kind in schedule)
    assert set(kinds) == {ACK, REDEEM, APPROVE}
    assert all(count / len(schedule) > 0.28 for count in kinds.values())


def test_each_arrival_takes_the_next_prepared_request_of_its_path() -> None:
    prepared = {kind: [Request(kind, "POST", f"/{kind}/{n}") for n in range(3)] for kind in ("a", "b")}
    sent = assign([(0.1, "a"), (0.2, "b"), (0.3, "a"), (0.4, "a")], prepared)
    assert [(at, r.target) for at, r in sent] == [(0.1, "/a/0"), (0.2, "/b/0"), (0.3, "/a/1"), (0.4, "/a/2")]


def test_the_knee_lies_between_the_last_rate_under_the_bar_and_the_first_over_it() -> None:
    assert knee({10: 20.0, 25: 40.0, 50: 180.0, 100: 900.0}, 250) == Knee(50, 100)
    # the rates' order in the mapping does not matter, and a p99 at the bar is not over it
    assert knee({100: 900.0, 10: 20.0, 50: 250.0, 25: 40.0}, 250) == Knee(50, 100)


def test_the_knee_is_the_first_rate_over_the_bar_even_if_a_later_one_dips_under() -> None:
    assert knee({10: 20.0, 25: 300.0, 50: 240.0}, 250) == Knee(10, 25)


def test_a_knee_outside_the_measured_rates_says_so() -> None:
    assert knee({10: 20.0, 100: 90.0}, 250) == Knee(100, None)
    assert knee({10: 400.0, 100: 900.0}, 250) == Knee(None, 10)
    assert Knee(100, None).describe() == "not passed up to 100/s"
    assert Knee(None, 10).describe() == "passed already at 10/s"
    assert Knee(50, 100).describe() == "between 50 and 100/s"

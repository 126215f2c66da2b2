"""`impersonation-bot digest --period …`: the scheduler's review on demand,
in-process through `main()` on both databases."""
from __future__ import annotations

import csv
import io

from sqlalchemy import select

from bot.db.engine import make_engine, make_session_factory
from bot.db.models import AuditEvent
from tests.conftest import TEST_POLICY
from tests.test_cli import on_db, run, workdir  # noqa: F401 - fixtures shared with the CLI tests


def setup_policy(workdir, monkeypatch) -> None:
    (workdir / "policy.toml").write_text(TEST_POLICY)
    monkeypatch.setenv("IMPERSONATION_POLICY", str(workdir / "policy.toml"))


def digest_events(db_url: str) -> list[AuditEvent]:
    engine = make_engine(db_url)
    try:
        with make_session_factory(engine)() as db:
            return list(db.execute(select(AuditEvent).where(AuditEvent.type == "digest.generated")).scalars())
    finally:
        engine.dispose()


def test_digest_prints_the_review_and_is_audited(on_db, workdir, monkeypatch, capsys):
    setup_policy(workdir, monkeypatch)
    code, out, err = run(capsys, "digest", "--period", "last-7d", "--by", "USECURITY1")
    assert (code, err) == (0, "")
    assert out.startswith("# Access review: the 7 days to ")
    assert "The hash chain verifies from the first event" in out
    (event,) = digest_events(on_db)
    assert event.actor_slack_id == "USECURITY1" and '"period":"last-7d"' in event.details


def test_digest_writes_a_file_in_each_format(on_db, workdir, monkeypatch, capsys):
    setup_policy(workdir, monkeypatch)
    for fmt in ("md", "html", "csv"):
        target = workdir / f"review.{fmt}"
        code, out, _ = run(capsys, "digest", "--period", "2026Q3", "--format", fmt, "--output", str(target))
        assert code == 0 and out.startswith(f"{target}: ") and target.stat().st_size > 100
    rows = list(csv.reader(io.StringIO((workdir / "review.csv").read_text())))
    assert rows[1][:2] == ["period", "2026Q3"]
    assert "<!doctype html>" in (workdir / "review.html").read_text()


def test_a_bad_period_is_a_usage_error_and_writes_nothing(on_db, workdir, monkeypatch, capsys):
    setup_policy(workdir, monkeypatch)
    code, out, err = run(capsys, "digest", "--period", "2026Q5")
    assert code == 2 and out == "" and "2026Q3" in err and "last-7d" in err
    assert digest_events(on_db) == []

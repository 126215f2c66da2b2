"""The scheduler's hourly audit checkpoint (bot/domain/checkpoint_job.py): once per hour across
schedulers, appended to the checkpoint file, recorded as `audit.checkpoint`, owed to the
security channel; never signed over a chain that no longer verifies."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

from sqlalchemy import select

from bot.db.models import AuditEvent
from bot.domain import checkpoint_job, checkpoints, outbox
from tests.fakes.attacker import rewrite
from tests.fakes.directory_data import load_directory

T0 = datetime(2030, 1, 7, 9, 15, tzinfo=timezone.utc)


def events(ctx, event_type):
    with ctx.sessions() as db:
        return list(db.execute(select(AuditEvent).where(AuditEvent.type == event_type).order_by(AuditEvent.seq)).scalars())


def test_one_checkpoint_an_hour_kept_in_the_file_the_log_and_the_channel(ctx, session_factory, tmp_path):
    load_directory(session_factory, tmp_path)
    ctx.checkpoint_file = tmp_path / "checkpoints.jsonl"
    made = checkpoint_job.run_due(ctx, now=T0)
    assert made is not None and checkpoints.signature_ok(made, {ctx.signing_key.kid: ctx.signing_key.public_key})
    assert checkpoint_job.run_due(ctx, now=T0 + timedelta(minutes=40)) is None  # same hour
    later = checkpoint_job.run_due(ctx, now=T0 + timedelta(hours=1))
    assert later is not None and later.seq == made.seq + 1  # the first checkpoint's own event
    assert checkpoints.read_file(ctx.checkpoint_file) == [made, later]
    first, second = events(ctx, checkpoint_job.EVENT)
    assert json.loads(first.details)["seq"] == made.seq and first.seq == made.seq + 1
    rows = outbox.rows(ctx, kinds=[outbox.Kind.CHECKPOINT])
    assert [r.subject_id for r in rows] == [str(first.seq), str(second.seq)]
    assert checkpoint_job.checkpoint_for(ctx, str(first.seq)) == made
    assert checkpoint_job.checkpoint_for(ctx, "1") is None and checkpoint_job.checkpoint_for(ctx, "x") is None


def test_a_rewritten_chain_is_not_signed_over(ctx, session_factory, engine, tmp_path):
    load_directory(session_factory, tmp_path)
    rewrite(engine, "UPDATE audit_head SET hash = :h", h="f" * 64)
    assert checkpoint_job.run_due(ctx, now=T0) is None
    (refused,) = events(ctx, "audit.checkpoint_refused")
    assert "disagree" in json.loads(refused.details)["reason"]
    assert events(ctx, checkpoint_job.EVENT) == [] and outbox.rows(ctx, kinds=[outbox.Kind.CHECKPOINT]) == []

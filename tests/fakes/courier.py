"""A courier (bot.domain.ports.Courier) that records what it was asked to deliver and answers
from a script, for tests of the outbox's claiming, retries and coalescing without Slack."""
from __future__ import annotations

import itertools
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable

from bot.domain.outbox import Delivery, Outcome, Sent


class FakeCourier:
    def __init__(self, answers: Iterable[Outcome | Callable[[Delivery], Outcome]] = (), *, pause: float = 0.0) -> None:
        self.deliveries: list[Delivery] = []
        self._answers = deque(answers)
        self._lock = threading.Lock()
        self._ts = itertools.count(1)
        #: seconds each delivery takes (to widen races between concurrent deliverers)
        self._pause = pause

    def deliver(self, delivery: Delivery) -> Outcome:
        with self._lock:
            self.deliveries.append(delivery)
            answer = self._answers.popleft() if self._answers else None
            ts = f"1700000000.{next(self._ts):06d}"
        if self._pause:
            time.sleep(self._pause)
        if answer is None:
            channel = delivery.ref.channel if delivery.ref else (delivery.recipient or "C0NONE")
            return Sent(channel, delivery.ref.ts if delivery.ref else ts)
        return answer(delivery) if callable(answer) else answer

    def subjects(self) -> list[str]:
        with self._lock:
            return [d.subject_id for d in self.deliveries]

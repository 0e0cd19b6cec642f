"""How fast a batch sends: at most N creates per S seconds per credential.

Defaults come from the provider module (``BULK_LIMIT``); ``BULK_LIMITS`` in the settings overrides them per
credential label, e.g. ``BULK_LIMITS = {"support-twilio": (5, 1)}``. A 429 pauses the batch for the
provider's ``Retry-After`` (else a back-off) and sends the row again.
"""

from __future__ import annotations

import time
from collections import deque

from django.conf import settings

import providers
from convadmin.credentials.models import Credential

#: Patched by tests: nothing in the suite really sleeps.
clock = time.monotonic
sleep = time.sleep


def limit_for(credential: Credential) -> tuple[int, float]:
    override = getattr(settings, "BULK_LIMITS", {}).get(credential.label)
    requests, seconds = override or providers.get(credential.provider).BULK_LIMIT
    return max(1, int(requests)), max(0.0, float(seconds))


class Pacer:
    """A sliding window: :meth:`wait` returns when one more create keeps within the limit."""

    def __init__(self, requests: int, seconds: float):
        self.requests, self.seconds = requests, seconds
        self.sent: deque[float] = deque()

    def wait(self) -> None:
        now = clock()
        while self.sent and now - self.sent[0] >= self.seconds:
            self.sent.popleft()
        if len(self.sent) >= self.requests:
            sleep(self.seconds - (now - self.sent[0]))
            self.sent.popleft()
        self.sent.append(clock())

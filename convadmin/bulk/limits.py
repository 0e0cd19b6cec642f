"""How fast bulk creates go, per credential: at most N creates per S seconds, and C rows in flight at once.

Defaults come from the provider module (``BULK_LIMIT`` = (N, S), ``BULK_CONCURRENCY`` = C); ``BULK_LIMITS`` in the
settings overrides them per credential label: ``{"support-twilio": (5, 1)}``, or ``(5, 1, 2)`` with the
concurrency. The pace is a leaky bucket kept in the database, one :class:`~convadmin.bulk.models.Pace` row per
credential: each create takes the credential's next free slot, S/N seconds after the one before, under a row lock,
so every batch of the credential in every worker process shares it. A 429 moves the next slot past the
provider's Retry-After (:func:`hold`): the whole credential waits, as the provider asked.
"""

from __future__ import annotations

import time
from typing import NamedTuple

from django.conf import settings
from django.db import transaction

import providers
from convadmin.bulk.models import Pace
from convadmin.credentials.models import Credential

#: Slots are Unix times shared between processes (hence the wall clock). Patched by tests: nothing sleeps there.
clock = time.time
sleep = time.sleep


class Limit(NamedTuple):
    requests: int
    seconds: float
    concurrency: int

    @property
    def interval(self) -> float:
        """Seconds between two slots of the credential."""
        return self.seconds / self.requests


def limit_for(credential: Credential) -> Limit:
    module = providers.get(credential.provider)
    override = tuple(getattr(settings, "BULK_LIMITS", {}).get(credential.label) or ())
    requests, seconds = override[:2] or module.BULK_LIMIT
    concurrency = override[2] if len(override) > 2 else module.BULK_CONCURRENCY
    return Limit(max(1, int(requests)), max(0.0, float(seconds)), max(1, int(concurrency)))


def reserve(credential: Credential, interval: float) -> float:
    """Take the credential's next send slot: how many seconds from now it is (0: at once)."""
    with transaction.atomic():
        pace = lock(credential)
        now = clock()
        slot = max(now, pace.next_at)
        pace.next_at = slot + interval
        pace.save(update_fields=["next_at"])
    return slot - now


def hold(credential: Credential, seconds: float) -> None:
    """No slot of the credential before ``seconds`` from now (the provider answered 429)."""
    with transaction.atomic():
        pace = lock(credential)
        pace.next_at = max(pace.next_at, clock() + seconds)
        pace.save(update_fields=["next_at"])


def lock(credential: Credential) -> Pace:
    """The credential's pace row, locked until the transaction ends: its slots, and its senders' claims, are taken
    one at a time."""
    Pace.objects.get_or_create(credential=credential)
    return Pace.objects.select_for_update().get(credential=credential)

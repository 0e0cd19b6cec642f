"""Writing what a provider already did, so that a lost database connection does not lose it."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from django.db import InterfaceError, OperationalError, connection, transaction

logger = logging.getLogger("convadmin.jobs")

#: What a dropped database connection (a restart, a failover, a killed backend) raises.
CONNECTION_LOST = (OperationalError, InterfaceError)


def save_durably(write: Callable[[], Any], *, attempts: int = 4) -> Any:
    """Run ``write`` in a durable transaction; if the database connection is lost, reconnect and try again,
    so an outcome (or a token) the provider already gave is not lost. Raises the last error when the
    database stays away: the job fails, its record keeps its lease, and the settle job looks it up later."""
    for attempt in range(attempts):
        try:
            with transaction.atomic(durable=True):
                return write()
        except CONNECTION_LOST:
            if attempt == attempts - 1 or connection.in_atomic_block:
                raise  # inside a caller's transaction nothing can be retried here: it fails as a whole
            logger.warning("Database unavailable while saving; reconnecting", exc_info=True)
            connection.close()
            time.sleep(0.5 * 2**attempt)
    return None

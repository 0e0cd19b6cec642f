"""A 10,000-row file is judged with a bounded number of queries (one per 2,000 keys, none per row). Its time is
measured by `bench/bulk_validate.py`, not here: timed tests only measure the machine."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from convadmin.bulk.rows import MAX_ROWS, validate_file
from tests.create_support import MIXIN_USER, mixin_credential, twilio_credential

pytestmark = pytest.mark.django_db


def test_ten_thousand_twilio_rows_are_judged_with_a_few_queries():
    credential = twilio_credential()
    lines = [
        "FriendlyName,UniqueName,participant1.identity,participant2.messaging_binding.address,"
        "participant2.messaging_binding.proxy_address"
    ]
    lines += [f"Order {n},order-{n},agent-{n},+1555{n:07d},+15550000000" for n in range(1, MAX_ROWS + 1)]
    data = ("\n".join(lines) + "\n").encode()
    with CaptureQueriesContext(connection) as queries:
        report = validate_file("rows.csv", data, credential)
    assert len(report.ready) == MAX_ROWS
    assert len(queries) <= 5  # existing natural keys: one query per 2,000 keys, none per row


def test_ten_thousand_mixin_rows_are_all_ready():
    credential = mixin_credential()
    lines = ["category,name,participant1.user_id"]
    lines += [f"GROUP,Team {n},{MIXIN_USER}" for n in range(MAX_ROWS)]
    report = validate_file("rows.csv", ("\n".join(lines)).encode(), credential)
    assert len(report.ready) == MAX_ROWS

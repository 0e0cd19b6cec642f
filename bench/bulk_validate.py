#!/usr/bin/env python
"""Time the bulk-create check of a 10,000-row file (issue 13's measure: ≤ 5 s on this machine).

Runs the real ``validate_file`` on generated Twilio and Mixin files (valid rows, and Twilio rows that all break a
rule) against a throwaway SQLite database; prints the best and median of 3 runs and the load average.
Usage: ``.venv/bin/python bench/bulk_validate.py``.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
os.environ["DATABASE_URL"] = f"sqlite:///{tempfile.mkdtemp()}/bulk.sqlite3"


def main() -> int:
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from convadmin.bulk.rows import MAX_ROWS, validate_file
    from tests.create_support import MIXIN_USER, mixin_credential, twilio_credential

    twilio, mixin = twilio_credential(), mixin_credential()
    header = "FriendlyName,UniqueName,participant1.identity"
    files = {
        "twilio, valid": (twilio, [header] + [f"Order {n},order-{n},agent-{n}" for n in range(MAX_ROWS)]),
        "twilio, every row invalid": (
            twilio,
            [header] + [f"Order {n},order {n},agent-{n}" for n in range(MAX_ROWS)],
        ),
        "mixin, valid": (
            mixin,
            ["category,name,participant1.user_id"]
            + [f"GROUP,Team {n},{MIXIN_USER}" for n in range(MAX_ROWS)],
        ),
    }
    print(f"load average {os.getloadavg()[0]:.2f}; {MAX_ROWS:,} rows a file")
    for name, (credential, lines) in files.items():
        data = ("\n".join(lines) + "\n").encode()
        times = []
        for _ in range(3):
            started = time.perf_counter()
            validate_file("rows.csv", data, credential)
            times.append(time.perf_counter() - started)
        print(f"{name}: best {min(times):.2f} s, median {statistics.median(times):.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python
"""The export job at a million rows: rows/s and the worker's peak RSS (and rows per CPU-second, which a
busy machine disturbs less), for CSV, JSONL and gzip'd CSV.

Seeds (once) the PostgreSQL database ``convadmin_exports_bench`` with bench/run.py's seeding (BENCH_ROWS,
default 1,000,000), then for each format records an Export as the web does and runs its job in a fresh
worker-like process (``run_export.call``), measuring that process alone (wait4). Prints a table; nothing is
written to bench/results.md. ``--drop`` drops the database afterwards.

    .venv/bin/python bench/export_job.py [--drop]
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("BENCH_DB", "convadmin_exports_bench")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import run  # noqa: E402

CASES = (("csv", False), ("jsonl", False), ("csv", True))


def run_one(pk: int) -> None:
    """In the child: run export ``pk``'s job like a worker would."""
    run.setup_django()
    from convadmin.exports.tasks import run_export

    outcome = run_export.call(pk)
    if outcome != "done":
        raise SystemExit(f"export {pk}: {outcome}")


def record_export(fmt: str, compress: bool) -> int:
    from django.contrib.auth import get_user_model
    from django.utils import timezone

    from convadmin.exports.models import Export
    from convadmin.lists.export import file_name

    user, _ = get_user_model().objects.get_or_create(username="bench-exporter")
    return Export.objects.create(
        created_by=user,
        list_name="conversations",
        format=fmt,
        gzip=compress,
        filters={},
        download_name=file_name("conversations", fmt, timezone.now(), compress=compress),
    ).pk


def measure(pk: int, env: dict[str, str]) -> dict[str, float]:
    from convadmin.exports.models import Export

    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, __file__, "--run-one", str(pk)], cwd=ROOT, env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    assert os.waitstatus_to_exitcode(status) == 0, status
    export = Export.objects.get(pk=pk)
    job = (export.finished_at - export.started_at).total_seconds()
    return {
        "rows": export.rows_written,
        "job_s": job,
        "rows_s": export.rows_written / job,
        "wall_s": wall,
        "cpu_rows_s": export.rows_written / (usage.ru_utime + usage.ru_stime),
        "rss_mb": usage.ru_maxrss / 1024,
        "mb": export.size / 1e6,
    }


def main() -> int:
    if sys.argv[1:2] == ["--run-one"]:
        run_one(int(sys.argv[2]))
        return 0
    run.ensure_database()
    run.setup_django()
    run.migrate()
    run.log(run.seed())
    with tempfile.TemporaryDirectory(prefix="convadmin-export-bench-") as folder:
        env = {**os.environ, "EXPORT_ROOT": folder, "PYTHONPATH": str(ROOT)}
        load = os.getloadavg()[0]
        print(f"{os.cpu_count()} CPUs, load average {load:.1f} at the start")
        print("| format | rows | job s | rows/s | rows per CPU-second | worker peak RSS MB | file MB |")
        print("|---|---:|---:|---:|---:|---:|---:|")
        for fmt, compress in CASES:
            m = measure(record_export(fmt, compress), env)
            label = fmt + (" + gzip" if compress else "")
            print(
                f"| {label} | {m['rows']:,} | {m['job_s']:.1f} | {m['rows_s']:,.0f} | {m['cpu_rows_s']:,.0f} "
                f"| {m['rss_mb']:.0f} "
                f"| {m['mb']:.0f} |",
                flush=True,
            )
    if "--drop" in sys.argv:
        from django.db import connections

        connections.close_all()
        import psycopg

        with psycopg.connect(run.SERVER + "postgres", autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{run.DB}" WITH (FORCE)')
        run.log(f"dropped {run.DB}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

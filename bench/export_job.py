#!/usr/bin/env python
"""The export job at a million rows: rows/s, the CPU-seconds of the worker and of its PostgreSQL backend, the
worker's peak RSS and the file's size, for CSV and JSONL, plain and gzip'd.

Seeds (once) the PostgreSQL database ``convadmin_exports_bench`` with bench/run.py's seeding (BENCH_ROWS,
default 1,000,000), then for each case records an Export as the web does and runs its job in a fresh
worker-like process (``run_export.call``), measuring that process alone (wait4) and the database backend
serving it (/proc, PostgreSQL on this machine). Each case runs with both writers: PostgreSQL's (COPY, what a job
uses there) and Python's (what SQLite and small streamed exports use), and the two files must be identical.
Prints a table; nothing is written to bench/results.md. ``--drop`` drops the database afterwards;
``--postgres-only`` skips the Python writer.

    .venv/bin/python bench/export_job.py [--drop] [--postgres-only]
"""

from __future__ import annotations

import filecmp
import gzip
import json
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

CASES = (("csv", False), ("jsonl", False), ("csv", True), ("jsonl", True))
WRITERS = ("postgres", "python")


def run_one(pk: int, writer: str) -> None:
    """In the child: run export ``pk``'s job like a worker would, with ``writer``; print the CPU-seconds
    of the database backend that served it."""
    run.setup_django()
    from dataclasses import replace

    from django.db import connection

    from convadmin.exports.tasks import run_export
    from convadmin.lists import export

    if writer == "python":  # the list without its columns: the job writes through Python
        export.register(replace(export.registered("conversations"), columns=None))
    outcome = run_export.call(pk)
    if outcome != "done":
        raise SystemExit(f"export {pk}: {outcome}")
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        backend = cursor.fetchone()[0]
    try:  # utime and stime, after the process name
        fields = Path(f"/proc/{backend}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:  # PostgreSQL on another machine
        print(json.dumps({"db_cpu_s": None}))
        return
    print(json.dumps({"db_cpu_s": (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")}))


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


def measure(pk: int, writer: str, env: dict[str, str]) -> dict[str, float]:
    from convadmin.exports.models import Export

    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, __file__, "--run-one", str(pk), writer], cwd=ROOT, env=env, stdout=subprocess.PIPE
    )
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    assert os.waitstatus_to_exitcode(status) == 0, status
    db_cpu = json.loads(proc.stdout.read().splitlines()[-1])["db_cpu_s"]
    proc.stdout.close()
    export = Export.objects.get(pk=pk)
    job = (export.finished_at - export.started_at).total_seconds()
    cpu = usage.ru_utime + usage.ru_stime
    return {
        "rows": export.rows_written,
        "job_s": job,
        "rows_s": export.rows_written / job,
        "wall_s": wall,
        "cpu_s": cpu,
        "db_cpu_s": db_cpu,
        "rss_mb": usage.ru_maxrss / 1024,
        "mb": export.size / 1e6,
        "file": export.file_name,
    }


def same_content(folder: Path, first: str, second: str, compress: bool) -> bool:
    """Whether two export files hold the same bytes (once decompressed: gzip headers differ)."""
    if not compress:
        return filecmp.cmp(folder / first, folder / second, shallow=False)
    with gzip.open(folder / first) as a, gzip.open(folder / second) as b:
        while (block := a.read(1 << 20)) == b.read(1 << 20):
            if not block:
                return True
    return False


def main() -> int:
    if sys.argv[1:2] == ["--run-one"]:
        run_one(int(sys.argv[2]), sys.argv[3])
        return 0
    run.ensure_database()
    run.setup_django()
    run.migrate()
    run.log(run.seed())
    writers = WRITERS[:1] if "--postgres-only" in sys.argv else WRITERS
    with tempfile.TemporaryDirectory(prefix="convadmin-export-bench-") as folder:
        env = {**os.environ, "EXPORT_ROOT": folder, "PYTHONPATH": str(ROOT)}
        print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the start")
        print(
            "| format | writer | rows | job s | rows/s | worker CPU s | PostgreSQL CPU s "
            "| worker peak RSS MB | file MB | load average |"
        )
        print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        for fmt, compress in CASES:
            files = []
            for writer in writers:
                load = os.getloadavg()[0]
                m = measure(record_export(fmt, compress), writer, env)
                files.append(m["file"])
                label = fmt + (" + gzip" if compress else "")
                db_cpu = "—" if m["db_cpu_s"] is None else f"{m['db_cpu_s']:.1f}"
                print(
                    f"| {label} | {writer} | {m['rows']:,} | {m['job_s']:.1f} | {m['rows_s']:,.0f} "
                    f"| {m['cpu_s']:.1f} | {db_cpu} | {m['rss_mb']:.0f} | {m['mb']:.0f} | {load:.1f} |",
                    flush=True,
                )
            if len(files) == 2:
                same = same_content(Path(folder), *files, compress)
                print(
                    f"<!-- {label}: the two files are {'identical' if same else 'DIFFERENT'} -->", flush=True
                )
                if not same:
                    return 1
            for name in files:
                (Path(folder) / name).unlink()
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

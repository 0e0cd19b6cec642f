"""The dashboard: figures about creates (per day, per hour, failures, latency), credential health and open
work, drawn as server-side SVG with a table beside each chart.

It reads two small rollup tables (:mod:`convadmin.dashboard.models`) rather than the records themselves, so a
page view costs the same at any number of records. The outcome rollup is kept up to date by signals on
``Conversation`` (in the transaction that saves the outcome); the latency rollup by a periodic job over new
exchanges (they are append-only and saved with ``bulk_create``, which sends no signal).
"""

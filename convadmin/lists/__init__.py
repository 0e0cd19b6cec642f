"""What every list shares (filter form base, keyset pages and batches, rendering, streamed export).

Imports no app: the conversation list and the audit log both build on it.
"""

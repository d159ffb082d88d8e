"""A task's story as its row keeps it: the last upstream calls (`tasks.poll_history`), bounded.

How many calls each task keeps (for the portal's timeline): the newest ones, trimmed by the write
that appends, so a task's row stays under ~2 KiB of history however long it is polled.
`poll_count` still counts every poll. A poll's entry is {"at", "code", "status", "request_id",
"latency_ms"} (service/store/poll_results.py); a re-check's submit adds {"at", "call": "submit",
"code", "task_id"} (service/store/rechecks.py).
"""

from __future__ import annotations

POLL_HISTORY_LIMIT = 20


def history_appended(history: str, entry: str) -> str:
    """SQL: the JSON array `history` with `entry` (a jsonb expression) appended, its oldest
    entries dropped beyond POLL_HISTORY_LIMIT."""
    return (
        f"jsonb_path_query_array({history} || jsonb_build_array({entry}), "
        f"'$[last - {POLL_HISTORY_LIMIT - 1} to last]')"
    )

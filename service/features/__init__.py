"""The feature layer: one function per operation a user can trigger, in one module per feature.

Every surface calls these and nothing else for its rules: the REST routers (`service/api/*.py`),
the portal's pages (`service/api/portal/`), the `phonebridge` command (`keys.py`), and next the
check jobs' workers. A surface only translates: its input to typed arguments, the answer (a row,
a `Page`) or the `FeatureError` raised (errors.py) to JSON, HTML or an exit status.

- `tasks.py`: register, find, list, cancel tasks; a task's story for the portal.
- `events.py`: the events feed and one event.
- `deliveries.py`: an event's deliveries, redeliver, failed deliveries, recover by time window.
- `subscriptions.py`: create, read, list, change, delete, rotate and reveal the secret, test event.
- `check_jobs.py`: read, list, start/pause/resume/cancel a check job, rejections, results (pages,
  streamed CSV and NDJSON), and the engine's moves of jobs; `check_job_creation.py`: create one
  (JSON or CSV).
- `keys.py`: API keys and per-client limits (the CLI) and the key lookups of sign-in.
- `overview.py`, `stats.py`: the portal's overview and the completion-time figures.
- `ids.py`, `paging.py`: the rules every feature shares (a malformed id names nothing; one page
  is fetched with one row more than asked).
- Submitting a check is `service/checks/submit.py` (its own package: it calls upstream).

Rules: SQL stays in `service.store`, decisions in `service.domain`; functions take the session or
connection they work in and never commit (the caller's request or task boundary does); they import
nothing of `service.api` nor a web framework (import-linter checks both).

How to extend: a new operation is one function in its feature's module (its queries in
`service.store`, a refusal a `FeatureError` subclass); the REST route, the portal page and the
job each call it, and its tests go in `tests/integration/features/`.
"""

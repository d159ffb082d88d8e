"""The simulator's documented defaults (service/sim/defaults.py) are the ones it runs with."""

from __future__ import annotations

from service.sim.defaults import DEFAULT_API_ID, DEFAULT_API_SECRET, DEFAULT_TASK_TTL_S
from service.sim.state import SimOptions


def test_a_simulator_started_without_options_uses_the_documented_defaults() -> None:
    options = SimOptions()

    assert (options.api_id, options.api_secret) == (DEFAULT_API_ID, DEFAULT_API_SECRET)
    # AccuAuth keeps a task_id valid for 24 hours, as phonebridge's own default TTL.
    assert options.task_ttl_s == DEFAULT_TASK_TTL_S == 86400.0

"""Completion-time estimates of known shape, for the schedule's and the store's tests."""

from __future__ import annotations

from service.domain.completion import BIN_COUNT, EDGES, CompletionEstimate


def uniform_estimate(up_to_bin: int, total: float = 1000.0) -> tuple[CompletionEstimate, float]:
    """Answers uniformly spread over (0, EDGES[up_to_bin]]: each bin's weight is proportional to
    its width, so the estimate's CDF is exactly age / end. Returns the estimate and the end."""
    end = EDGES[up_to_bin]
    weights = [
        total * (EDGES[i + 1] - EDGES[i]) / end if i < up_to_bin else 0.0 for i in range(BIN_COUNT)
    ]
    return CompletionEstimate(tuple(weights)), end

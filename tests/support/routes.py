"""The routes an app serves, read from its routing table."""

from __future__ import annotations

import re
from dataclasses import dataclass

from fastapi import FastAPI
from fastapi.routing import iter_route_contexts


@dataclass(frozen=True)
class Operation:
    method: str
    path: str  # the template, e.g. /v1/tasks/{task_id}

    def url(self, **values: str) -> str:
        """The path with each `{name}` replaced by its value (a placeholder when not given)."""
        return re.sub(r"\{([^}]+)\}", lambda m: values.get(m[1], "x1"), self.path)

    @property
    def path_parameters(self) -> list[str]:
        return re.findall(r"\{([^}]+)\}", self.path)

    @property
    def takes_body(self) -> bool:
        return self.method in {"POST", "PUT", "PATCH"}


def served_operations(app: FastAPI) -> list[Operation]:
    """Every (method, path) the app routes, read from its routing table rather than from its
    OpenAPI schema, so a route left out of the schema is listed too."""
    return sorted(
        {
            Operation(method, str(context.path))
            for context in iter_route_contexts(app.routes)
            for method in (getattr(context, "methods", None) or ())
            if method != "HEAD"
        },
        key=lambda op: (op.path, op.method),
    )


def v1_operations(app: FastAPI) -> list[Operation]:
    return [op for op in served_operations(app) if op.path.startswith("/v1/")]

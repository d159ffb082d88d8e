"""A webhook receiver that checks each request as a subscriber should: the Standard Webhooks
signature, verified with the `standardwebhooks` package (not phonebridge's own signing code, so it
is an independent check), and deduplication by webhook-id.

    POST /<any path>   a webhook: 204 when a known secret verifies it, else 401
    GET  /received     {"received": [...]} every webhook so far, with its verification result
    POST /secrets      {"secret": "whsec_..."} verify with this secret too (204)

`ReceiverServer` runs it on a thread of this process (the demo); `phonebridge demo-receiver`
serves it on its own (docker-compose's demo profile).
"""

from __future__ import annotations

import argparse
import logging
import threading
import time
from dataclasses import asdict, dataclass
from typing import Any

import orjson
import uvicorn
from standardwebhooks import Webhook, WebhookVerificationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from service.config import ConfigError
from service.domain.states import EventType
from service.serving import BackgroundServer, base_url_of, listen_for_command

log = logging.getLogger(__name__)

LISTENING_PREFIX = "demo-receiver listening on "
SECRET_PREFIX = "whsec_"  # noqa: S105 - the prefix, not a secret


@dataclass(frozen=True)
class ReceivedWebhook:
    webhook_id: str
    event_type: str | None
    task_id: str | None
    state: str | None
    phone_status: str | None
    verified: bool
    duplicate: bool  # this webhook-id arrived before (delivery is at least once)
    path: str
    at: float
    # The check job it is about: a job item's task event names its job, a job.completed is one.
    job_id: str | None = None


class ReceiverState:
    """Secrets and what arrived; shared between the server thread and its readers."""

    def __init__(self, secrets: list[str] | None = None) -> None:
        self._lock = threading.Lock()
        self._verifiers: list[Webhook] = []
        self._received: list[ReceivedWebhook] = []
        self._seen: set[str] = set()
        for secret in secrets or []:
            self.add_secret(secret)

    def add_secret(self, secret: str) -> None:
        if not secret.startswith(SECRET_PREFIX):
            # The message names the expected shape only: the value may be a real secret.
            raise ValueError(f"a secret starts with {SECRET_PREFIX}")
        verifier = Webhook(secret)
        with self._lock:
            self._verifiers.append(verifier)

    def verify(self, body: bytes, headers: dict[str, str]) -> bool:
        with self._lock:
            verifiers = list(self._verifiers)
        for verifier in verifiers:
            try:
                verifier.verify(body, headers)
            except WebhookVerificationError:
                continue
            return True
        return False

    def record(self, webhook: ReceivedWebhook) -> ReceivedWebhook:
        with self._lock:
            duplicate = webhook.webhook_id in self._seen
            self._seen.add(webhook.webhook_id)
            if duplicate:
                webhook = ReceivedWebhook(**{**asdict(webhook), "duplicate": True})
            self._received.append(webhook)
        return webhook

    def received(self) -> list[ReceivedWebhook]:
        with self._lock:
            return list(self._received)


_NOTHING: tuple[None, None, None, None, None] = (None, None, None, None, None)


def _describe(body: bytes) -> tuple[str | None, str | None, str | None, str | None, str | None]:
    """The event type, task_id, state, phone_status and check job of a webhook body, when it
    has them."""
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        return _NOTHING
    if not isinstance(payload, dict):
        return _NOTHING
    event_type = _text(payload.get("type"))
    data = _object(payload.get("data"))
    result = _object(data.get("result"))
    job_id = data.get("id") if event_type == EventType.JOB_COMPLETED else data.get("job_id")
    return (
        event_type,
        _text(data.get("task_id")),
        _text(data.get("state")),
        _text(result.get("phone_status")),
        _text(job_id),
    )


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def create_receiver_app(state: ReceiverState) -> Starlette:
    async def webhook(request: Request) -> Response:
        body = await request.body()
        headers = {name.lower(): value for name, value in request.headers.items()}
        verified = state.verify(body, headers)
        event_type, task_id, task_state, phone_status, job_id = _describe(body)
        received = state.record(
            ReceivedWebhook(
                webhook_id=headers.get("webhook-id", ""),
                event_type=event_type,
                task_id=task_id,
                state=task_state,
                phone_status=phone_status,
                verified=verified,
                duplicate=False,
                path=request.url.path,
                at=time.time(),
                job_id=job_id,
            )
        )
        log.info(
            "receiver.webhook",
            extra={
                "webhook_id": received.webhook_id,
                "type": event_type,
                "task_id": task_id,
                "verified": verified,
                "duplicate": received.duplicate,
            },
        )
        return Response(status_code=204 if verified else 401)

    async def received(request: Request) -> Response:
        body = {"received": [asdict(item) for item in state.received()]}
        return Response(orjson.dumps(body), media_type="application/json")

    async def add_secret(request: Request) -> Response:
        try:
            payload = orjson.loads(await request.body())
            state.add_secret(payload["secret"])
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            message = b'{"detail": "expected {\\"secret\\": \\"whsec_...\\"}"}'
            return Response(message, status_code=422, media_type="application/json")
        return Response(status_code=204)

    return Starlette(
        routes=[
            Route("/received", received, methods=["GET"]),
            Route("/secrets", add_secret, methods=["POST"]),
            Route("/{path:path}", webhook, methods=["POST"]),
        ]
    )


def _uvicorn(state: ReceiverState) -> uvicorn.Server:
    config = uvicorn.Config(
        create_receiver_app(state),
        lifespan="off",
        access_log=False,
        log_config=None,
        log_level="warning",
        timeout_graceful_shutdown=2,
    )
    return uvicorn.Server(config)


class ReceiverServer(BackgroundServer):
    """The receiver on a background thread of this process."""

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.state = ReceiverState()
        super().__init__(_uvicorn(self.state), name="webhook receiver", host=host, port=port)


def run_receiver(args: argparse.Namespace) -> int:
    """`phonebridge demo-receiver`: serve until SIGINT or SIGTERM."""
    try:
        state = ReceiverState(list(args.secret))
    except ValueError as error:
        raise ConfigError(f"demo-receiver: --secret: {error}") from None
    sock = listen_for_command("demo-receiver", args.host, args.port)
    print(f"{LISTENING_PREFIX}{base_url_of(sock)}", flush=True)
    _uvicorn(state).run(sockets=[sock])
    return 0

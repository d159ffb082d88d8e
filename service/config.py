"""Configuration: one Settings class, read from PHONEBRIDGE_* variables and an optional .env file.

Every process validates its configuration at start and exits with a one-line reason naming the
variable when it is unusable (see `load_settings`). Secrets are `SecretStr`, so they never show up
in a repr, a log line or a validation error.
"""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Collection, Mapping
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, NoReturn

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from service.domain.backoff import BackoffPolicy
from service.domain.callback_trust import DEFAULT_LOSS_TOLERANCE
from service.domain.phone_numbers import DEFAULT_CHECK_COUNTRIES, parse_check_countries
from service.domain.rechecks import AFTER_S_MAX as RECHECK_MAX_AFTER_S
from service.domain.rechecks import AFTER_S_MIN as RECHECK_MIN_AFTER_S
from service.domain.schedule import (
    DEFAULT_CALLS_PER_TASK,
    DEFAULT_HALF_LIFE_S,
    DEFAULT_MIN_COMPLETIONS,
    PollSchedule,
    SchedulePolicy,
    target_probability,
)

ENV_PREFIX = "PHONEBRIDGE_"
# Shorter key material is refused by every process at start: a key that some process rejects
# only once it needs it (the API on its first subscription) shows up as a 500 instead.
SECRET_KEY_MIN_CHARS = 16
DATABASE_URL_SCHEMES = ("postgresql", "postgres")


class ConfigError(Exception):
    """The configuration cannot be used; the message names the variable and is safe to print."""


class Need(StrEnum):
    """What a command cannot start without, beyond settings that are valid."""

    DATABASE = "database"
    REDIS = "redis"
    UPSTREAM_CREDENTIALS = "upstream credentials"


# Checked by the CLI before a command starts, and by `up` and `demo` for every child before
# starting any, so a missing variable is one line up front rather than a child dying later.
COMMAND_NEEDS: Mapping[str, frozenset[Need]] = {
    "migrate": frozenset({Need.DATABASE}),
    "api": frozenset({Need.DATABASE, Need.REDIS}),
    "worker": frozenset({Need.DATABASE, Need.REDIS, Need.UPSTREAM_CREDENTIALS}),
    "scheduler": frozenset({Need.DATABASE, Need.REDIS}),
    "api-key": frozenset({Need.DATABASE}),
    "secret-key": frozenset({Need.DATABASE}),
}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        frozen=True,
    )

    # --- the contract's variables -------------------------------------------------------------
    database_url: str | None = None
    redis_url: str | None = None
    data_dir: Path = Path("./.phonebridge")
    upstream_base_url: str = "https://cloudapi.mexico.accuauth.com"
    upstream_api_id: SecretStr | None = None
    upstream_api_secret: SecretStr | None = None
    upstream_timeout_s: float = Field(default=10.0, gt=0)
    upstream_max_rps: float = Field(default=50.0, gt=0)
    task_ttl_s: float = Field(default=86400.0, gt=0)
    poll_initial_s: float = Field(default=2.0, gt=0)
    poll_max_s: float = Field(default=300.0, gt=0)
    poll_schedule: PollSchedule = PollSchedule.ADAPTIVE
    webhook_timeout_s: float = Field(default=15.0, gt=0)
    webhook_retry_schedule: Annotated[tuple[float, ...], NoDecode] = (
        5.0,
        300.0,
        1800.0,
        7200.0,
        18000.0,
        36000.0,
        36000.0,
    )
    webhook_allow_private: bool = False
    # A subscription whose attempts have all failed this long (and a delivery its whole retry
    # schedule) is disabled (service/domain/endpoint_health.py).
    webhook_disable_after_s: float = Field(default=432000.0, gt=0)
    retention_days: float = Field(default=30.0, gt=0)
    # ISO regions whose numbers checks accept (service/domain/phone_numbers.py).
    check_countries: Annotated[tuple[str, ...], NoDecode] = DEFAULT_CHECK_COUNTRIES

    # --- operational knobs beyond the contract (documented in the README) ----------------------
    # Key that encrypts webhook secrets at rest; without it a key is derived and kept under
    # data_dir (fine for `up`/`demo`, not for a fleet of machines).
    secret_key: SecretStr | None = None
    # Older secret keys, comma-separated, still read (sealed numbers and webhook secrets open,
    # portal sessions verify, number digests match) but never written: a rotation's grace
    # (service/secret_key.py, docs/operations.md).
    secret_key_previous: Annotated[tuple[SecretStr, ...], NoDecode] = ()
    lease_s: float = Field(default=10.0, gt=0)
    # Per-client intake limits (0: off); a client's own values (`phonebridge api-key limits`)
    # take precedence.
    client_max_rps: int = Field(default=0, ge=0)
    client_max_pending: int = Field(default=0, ge=0)
    # Upstream checks a client may cause per UTC day (0: off; service/domain/budgets.py); a
    # client's own value (`phonebridge api-key limits --max-checks-per-day`) takes precedence.
    client_max_checks_per_day: int = Field(default=0, ge=0)
    scheduler_tick_s: float = Field(default=0.25, gt=0)
    poll_batch_size: int = Field(default=200, ge=1, le=5000)
    pause_probe_s: float = Field(default=30.0, gt=0)
    log_level: str = "INFO"
    # Prometheus exporters of the worker and scheduler processes (0: none); the API serves
    # /metrics itself. The store snapshot behind the API's task and backlog gauges is refreshed
    # by a scheduler every metrics_refresh_s.
    worker_metrics_port: int = Field(default=0, ge=0, le=65535)
    scheduler_metrics_port: int = Field(default=0, ge=0, le=65535)
    metrics_host: str = "127.0.0.1"
    # OpenTelemetry's own variable, without our prefix: the OTLP/HTTP collector that traces go to
    # (service/observability/traces.py). Unset, traces are off and cost nothing.
    otel_exporter_otlp_endpoint: str | None = Field(
        default=None, validation_alias="OTEL_EXPORTER_OTLP_ENDPOINT"
    )
    metrics_refresh_s: float = Field(default=15.0, gt=0)
    # Invalid API keys one address may present in a minute (API and portal alike) before it is
    # refused until the minute ends (service/api/signins.py); 0: no limit.
    sign_in_failures_per_minute: int = Field(default=20, ge=0)
    # How long the API waits for a request's headers, and for the next piece of its body
    # (service/api/protocol.py), before it closes the connection.
    http_header_timeout_s: float = Field(default=10.0, gt=0)
    http_body_timeout_s: float = Field(default=30.0, gt=0)
    # How long a portal sign-in lasts before its person signs in again.
    portal_session_s: float = Field(default=28800.0, ge=60, le=7 * 86400)
    # The adaptive schedule's trade-off and its estimate (service/domain/schedule.py): the call
    # budget per task sets the target, old completions count half after the half-life, and
    # fewer (decayed) completions than the minimum mean cold start (backoff).
    poll_calls_per_task: float = Field(default=DEFAULT_CALLS_PER_TASK, ge=2, le=100)
    # A p95 detection-lag target instead of the call budget: the schedule spends the fewest calls
    # its forecast says keep the p95 lag within it (a client's own one takes precedence).
    poll_target_p95_s: float | None = Field(default=None, gt=0)
    poll_estimate_half_life_s: float = Field(default=DEFAULT_HALF_LIFE_S, gt=0)
    poll_estimate_min_completions: float = Field(default=DEFAULT_MIN_COMPLETIONS, ge=1)

    # --- submitting checks and upstream's callback (hints) -------------------------------------
    # The base URL at which upstream reaches this API; unset, checks carry no callback.
    public_url: str | None = None
    # While the client's callbacks are trusted, a check submitted with a callback is first
    # polled this long after submission (the safety net for a lost callback; later safety polls
    # follow the completion estimate); a hint makes it due at once.
    hinted_poll_initial_s: float = Field(default=30.0, gt=0)
    hint_min_interval_s: float = Field(default=2.0, gt=0)
    # Early hints (callbacks for task_ids a client has not registered yet) kept per client; past
    # it the oldest are dropped.
    early_hints_max: int = Field(default=10_000, ge=1)
    # A client's callbacks stop being trusted when more than this share of the recent ones went
    # missing (service/domain/callback_trust.py): its checks are then polled as registered tasks.
    callback_loss_tolerance: float = Field(default=DEFAULT_LOSS_TOLERANCE, ge=0, le=1)
    # The smallest `recheck.after_s` a check may ask for (service/domain/rechecks.py); lower it
    # only for tests and demos, which cannot wait a minute.
    recheck_min_after_s: int = Field(default=RECHECK_MIN_AFTER_S, ge=1, le=RECHECK_MAX_AFTER_S)

    @field_validator("webhook_retry_schedule", mode="before")
    @classmethod
    def _parse_schedule(cls, value: Any) -> Any:
        if isinstance(value, str):
            parts = [p.strip() for p in value.split(",")]
            if not value.strip() or any(not p for p in parts):
                raise ValueError("expected comma-separated seconds, e.g. 5,300,1800")
            try:
                return tuple(float(p) for p in parts)
            except ValueError:
                raise ValueError("expected comma-separated seconds, e.g. 5,300,1800") from None
        return value

    @field_validator("webhook_retry_schedule")
    @classmethod
    def _schedule_positive(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        if any(v < 0 for v in value):
            raise ValueError("delays must not be negative")
        return value

    @field_validator("check_countries", mode="before")
    @classmethod
    def _parse_countries(cls, value: Any) -> Any:
        if isinstance(value, str):
            return parse_check_countries(value)
        if isinstance(value, (tuple, list)) and all(isinstance(v, str) for v in value):
            return parse_check_countries(",".join(value))
        return value

    @field_validator("database_url")
    @classmethod
    def _database_url_is_postgres(cls, value: str | None) -> str | None:
        if value is None:
            return None
        scheme = value.split("://", 1)[0] if "://" in value else ""
        # postgres:// is what Heroku, Render and libpq's own docs hand out; the driver part
        # (+psycopg) is optional and replaced by psycopg in any case (sqlalchemy_url).
        if scheme.split("+", 1)[0] not in DATABASE_URL_SCHEMES:
            raise ValueError("expected a PostgreSQL URL, e.g. postgresql://host:5432/db")
        return value

    @field_validator("secret_key")
    @classmethod
    def _secret_key_long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < SECRET_KEY_MIN_CHARS:
            raise ValueError(
                f"must be at least {SECRET_KEY_MIN_CHARS} characters; "
                "make one with `openssl rand -hex 32`"
            )
        return value

    @field_validator("secret_key_previous", mode="before")
    @classmethod
    def _parse_previous_keys(cls, value: Any) -> Any:
        if isinstance(value, str):
            if not value.strip():
                return ()  # set but empty, as docker compose passes an unset ${VAR:-}
            parts = [part.strip() for part in value.split(",")]
            if any(not part for part in parts):
                raise ValueError("expected comma-separated keys, the most recent first")
            return tuple(dict.fromkeys(parts))
        return value

    @field_validator("secret_key_previous")
    @classmethod
    def _previous_keys_long_enough(cls, value: tuple[SecretStr, ...]) -> tuple[SecretStr, ...]:
        for position, key in enumerate(value, start=1):
            if len(key.get_secret_value()) < SECRET_KEY_MIN_CHARS:
                # The key's position, never the key.
                raise ValueError(
                    f"key {position} is shorter than {SECRET_KEY_MIN_CHARS} characters"
                )
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_url_scheme(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("expected a redis:// URL, e.g. redis://127.0.0.1:6379/0")
        return value

    @field_validator("upstream_base_url")
    @classmethod
    def _base_url_http(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("expected an http:// or https:// URL")
        return value.rstrip("/")

    @field_validator("public_url")
    @classmethod
    def _public_url_http(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        value = value.strip()
        scheme, _, rest = value.partition("://")
        if scheme not in ("http", "https") or not rest.split("/", 1)[0]:
            raise ValueError(
                "expected the http:// or https:// base URL at which upstream reaches this API, "
                "e.g. https://phonebridge.example.com"
            )
        if "?" in value or "#" in value or "@" in rest.split("/", 1)[0]:
            raise ValueError("expected a base URL without credentials, query or fragment")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _backoff_ordered(self) -> Settings:
        if self.poll_max_s < self.poll_initial_s:
            raise ValueError("PHONEBRIDGE_POLL_MAX_S must be at least PHONEBRIDGE_POLL_INITIAL_S")
        return self

    @model_validator(mode="after")
    def _previous_keys_need_a_current_one(self) -> Settings:
        if self.secret_key_previous and self.secret_key is None:
            raise ValueError(
                "PHONEBRIDGE_SECRET_KEY_PREVIOUS is set but PHONEBRIDGE_SECRET_KEY is not: "
                "a rotation needs the new key in PHONEBRIDGE_SECRET_KEY"
            )
        return self

    # --- derived values ---------------------------------------------------------------------
    @property
    def upstream_account(self) -> str:
        """A stable name for the upstream account the completion-time estimate belongs to: a
        digest of the base URL and the API id, so the id itself is not stored."""
        api_id = self.upstream_api_id.get_secret_value() if self.upstream_api_id else ""
        digest = hashlib.sha256(f"{self.upstream_base_url}\0{api_id}".encode())
        return digest.hexdigest()[:32]

    @property
    def poll_backoff(self) -> BackoffPolicy:
        """The plain backoff between polls (PHONEBRIDGE_POLL_INITIAL_S to _MAX_S)."""
        return BackoffPolicy(self.poll_initial_s, self.poll_max_s)

    @property
    def schedule_policy(self) -> SchedulePolicy:
        return SchedulePolicy(
            self.poll_schedule,
            target_p=target_probability(self.poll_calls_per_task),
            min_completions=self.poll_estimate_min_completions,
            target_p95_s=self.poll_target_p95_s,
        )

    @property
    def sqlalchemy_url(self) -> str:
        """The database URL with the psycopg (v3) driver, which the whole service uses."""
        url = self.require_database_url()
        scheme, rest = url.split("://", 1)
        return f"postgresql+psycopg://{rest}" if scheme in DATABASE_URL_SCHEMES else url

    def require_database_url(self) -> str:
        if not self.database_url:
            raise ConfigError(f"{ENV_PREFIX}DATABASE_URL is not set")
        return self.database_url

    def require_redis_url(self) -> str:
        if not self.redis_url:
            raise ConfigError(f"{ENV_PREFIX}REDIS_URL is not set")
        return self.redis_url

    def check_needs(self, needs: Collection[Need], command: str) -> None:
        """ConfigError naming the first missing variable and what to do about it."""
        for need in sorted(needs):
            if (reason := self._missing(need, command)) is not None:
                raise ConfigError(reason)

    def _missing(self, need: Need, command: str) -> str | None:
        if need is Need.DATABASE and not self.database_url:
            return (
                f"{ENV_PREFIX}DATABASE_URL is not set: {command} needs PostgreSQL; set it "
                "(e.g. postgresql://127.0.0.1:5432/phonebridge), or start `phonebridge up` "
                "and run this beside it with the same PHONEBRIDGE_DATA_DIR"
            )
        if need is Need.REDIS and not self.redis_url:
            return (
                f"{ENV_PREFIX}REDIS_URL is not set: {command} needs Redis; set it "
                "(e.g. redis://127.0.0.1:6379/0), or start `phonebridge up` "
                "and run this beside it with the same PHONEBRIDGE_DATA_DIR"
            )
        if need is Need.UPSTREAM_CREDENTIALS:
            unset = [
                f"{ENV_PREFIX}{name.upper()}"
                for name, value in (
                    ("upstream_api_id", self.upstream_api_id),
                    ("upstream_api_secret", self.upstream_api_secret),
                )
                if value is None or not value.get_secret_value()
            ]
            if unset:
                return (
                    f"{' and '.join(unset)} {'is' if len(unset) == 1 else 'are'} not set: "
                    f"{command} polls AccuAuth with your account's credentials; set "
                    f"{'it' if len(unset) == 1 else 'both'} (or try `phonebridge demo`, "
                    "which brings its own simulator)"
                )
        return None


def describe_validation_error(error: ValidationError) -> str:
    """One line naming the offending variable, never echoing its value (it may be secret)."""
    first = error.errors()[0]
    loc = [str(part) for part in first.get("loc", ()) if part != "__root__"]
    message = str(first.get("msg", "invalid value")).removeprefix("Value error, ")
    if loc:
        return f"invalid configuration: {ENV_PREFIX}{loc[0].upper()}: {message}"
    return f"invalid configuration: {message}"


def build_settings(**overrides: Any) -> Settings:
    """Read the environment (and .env); raise ConfigError with a printable one-line reason."""
    try:
        return Settings(**overrides)
    except ValidationError as error:
        raise ConfigError(describe_validation_error(error)) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return build_settings()


def exit_with(error: ConfigError) -> NoReturn:
    print(f"phonebridge: {error}", file=sys.stderr)
    raise SystemExit(2)

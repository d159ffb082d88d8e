"""What `phonebridge up` decides before it starts anything (service/run/up.py): the configuration
every child would refuse, refused at once naming its variable (the servers `up` embeds count as
given); the URL the API is reached at; and an embedded server's port, the last one when it is
still free. Starting the stack, through the command as a user runs it, is
tests/e2e/test_up.py's."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from service.config import ConfigError, Settings, build_settings
from service.run.datadir import DATABASE_URL_VARIABLE, REDIS_URL_VARIABLE, record_embedded_servers
from service.run.up import api_base_url, check_configuration, embedded_port, uses_embedded_servers

SERVERS = {
    "PHONEBRIDGE_DATABASE_URL": "postgresql://127.0.0.1:5432/phonebridge",
    "PHONEBRIDGE_REDIS_URL": "redis://127.0.0.1:6379/0",
}
CREDENTIALS = {
    "PHONEBRIDGE_UPSTREAM_API_ID": "an-api-id",
    "PHONEBRIDGE_UPSTREAM_API_SECRET": "an-api-secret",
}


@pytest.fixture
def environment(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Settings]:
    """The user's environment holds exactly the variables given: its settings, as `up` reads
    them (the children's are read the same way, with their own variables on top)."""

    def set_to(variables: dict[str, str]) -> Settings:
        for name, value in variables.items():
            monkeypatch.setenv(name, value)
        return build_settings()

    return set_to


@pytest.fixture
def listening() -> Iterator[int]:
    """A port of 127.0.0.1 that something listens on."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        yield server.getsockname()[1]


@pytest.mark.parametrize(
    ("host", "url"),
    [
        ("127.0.0.1", "http://127.0.0.1:8000"),
        ("0.0.0.0", "http://127.0.0.1:8000"),  # noqa: S104
        ("", "http://127.0.0.1:8000"),
        ("::", "http://127.0.0.1:8000"),
        ("::1", "http://[::1]:8000"),
        ("api.internal", "http://api.internal:8000"),
    ],
)
def test_the_api_is_reached_through_loopback_when_it_listens_everywhere(
    host: str, url: str
) -> None:
    assert api_base_url(host, 8000) == url


def test_missing_credentials_are_refused_naming_the_child_that_needs_them(
    environment: Callable[..., Settings],
) -> None:
    settings = environment(SERVERS)

    with pytest.raises(ConfigError) as refused:
        check_configuration(settings, {}, "up")

    assert "PHONEBRIDGE_UPSTREAM_API_ID" in str(refused.value)
    assert "`phonebridge up` (its worker)" in str(refused.value)


def test_credentials_given_to_the_children_count(environment: Callable[..., Settings]) -> None:
    settings = environment(SERVERS)
    # What `demo` gives its children: its simulator's credentials.
    child_env = {**CREDENTIALS, "PATH": "/usr/bin"}

    check_configuration(settings, child_env, "demo")


def test_a_value_given_to_the_children_is_checked_like_the_users(
    environment: Callable[..., Settings],
) -> None:
    settings = environment(SERVERS | CREDENTIALS)

    with pytest.raises(ConfigError, match="PHONEBRIDGE_POLL_MAX_S"):
        check_configuration(settings, {"PHONEBRIDGE_POLL_MAX_S": "soon"}, "demo")


def test_the_servers_up_embeds_count_as_given(environment: Callable[..., Settings]) -> None:
    settings = environment(CREDENTIALS)

    assert uses_embedded_servers(settings)
    check_configuration(settings, {}, "up")  # phonebridge[embedded] is installed here


def test_up_embeds_whichever_server_has_no_url(environment: Callable[..., Settings]) -> None:
    database_only = {"PHONEBRIDGE_DATABASE_URL": SERVERS["PHONEBRIDGE_DATABASE_URL"]}

    assert uses_embedded_servers(environment(database_only))
    assert not uses_embedded_servers(environment(SERVERS))


def test_an_embedded_server_gets_its_last_port_back_when_it_is_free(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free = probe.getsockname()[1]
    record_embedded_servers(tmp_path, {REDIS_URL_VARIABLE: f"redis://127.0.0.1:{free}/0"})

    assert embedded_port(tmp_path, REDIS_URL_VARIABLE) == free


def test_an_embedded_server_whose_last_port_is_taken_gets_another(
    tmp_path: Path, listening: int
) -> None:
    taken = f"postgresql://postgres@127.0.0.1:{listening}/phonebridge"
    record_embedded_servers(tmp_path, {DATABASE_URL_VARIABLE: taken})

    port = embedded_port(tmp_path, DATABASE_URL_VARIABLE)

    assert port != listening
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", port))  # free indeed


def test_a_first_start_gets_a_free_port(tmp_path: Path) -> None:
    port = embedded_port(tmp_path, DATABASE_URL_VARIABLE)

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", port))

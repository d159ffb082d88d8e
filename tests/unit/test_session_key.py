"""The portal's session key (service/api/portal/session_key.py): the same for every process of a
deployment, another for another secret, and never the webhook secrets' key."""

from __future__ import annotations

from pathlib import Path

from service.api.portal.session_key import portal_session_key
from service.config import Settings, build_settings
from service.domain.portal import SESSION_KEY_BYTES
from service.secret_key import deployment_key


def settings(secret_key: str, data_dir: Path) -> Settings:
    return build_settings(secret_key=secret_key, data_dir=data_dir)


def test_every_process_of_a_deployment_derives_the_same_key(tmp_path: Path) -> None:
    first = portal_session_key(settings("deployment-secret-a", tmp_path))
    second = portal_session_key(settings("deployment-secret-a", tmp_path))

    assert first == second
    assert len(first) == SESSION_KEY_BYTES


def test_another_secret_or_purpose_gives_another_key(tmp_path: Path) -> None:
    key = portal_session_key(settings("deployment-secret-a", tmp_path))

    assert key != portal_session_key(settings("deployment-secret-b", tmp_path))
    assert key != deployment_key(
        settings("deployment-secret-a", tmp_path), b"phonebridge webhook secrets at rest v1"
    )

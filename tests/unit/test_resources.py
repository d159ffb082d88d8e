"""What the features need of the process that runs them (service/features/resources.py), and
that the API's resources provide every part of it."""

from __future__ import annotations

import inspect

from service.api.resources import ApiResources
from service.features.resources import FeatureResources


def members(protocol: type) -> set[str]:
    return {name for name, _ in inspect.getmembers(protocol) if not name.startswith("_")}


def test_the_features_ask_for_settings_sessions_resolver_cipher_and_clock() -> None:
    assert members(FeatureResources) == {"settings", "sessions", "resolver", "cipher", "clock"}


def test_the_api_resources_provide_everything_the_features_ask_for() -> None:
    provided = set(ApiResources.__dataclass_fields__) | members(ApiResources)

    assert members(FeatureResources) <= provided

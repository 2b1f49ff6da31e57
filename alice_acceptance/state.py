"""The application's own part of a run: the API requests it made (every process's, summed by the controller) and
the report files it wrote at the end (which the CLI names). The core's parts are acceptance/run.py's, remediation's
remediation/context.py's."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

APP_KEY = pytest.StashKey["AppState"]()


@dataclass
class AppState:
    api_baseline: dict[str, int] = field(default_factory=dict)  # the process's count when the run began
    api_requests: dict[str, int] = field(default_factory=dict)  # this run's, per API
    outputs: dict[str, Path] = field(default_factory=dict)  # the report files written at the end


def app_state(config: pytest.Config) -> AppState | None:
    return config.stash.get(APP_KEY, None)

"""The lab's own tests need it up (`python -m tests.lab up`); without it they fail, never skip."""

from __future__ import annotations

import pytest

from .topology import STATE


@pytest.fixture(scope="session")
def lab_up() -> None:
    if not (STATE / "inventory.yaml").exists() or not (STATE / "env").exists():
        pytest.fail("the lab is not up: run `python -m tests.lab up` first", pytrace=False)

"""A pytest plugin for the resilience tests (`-p tests.lab.midrun`): injects the lab fault named by
ALICELAB_MIDRUN_FAULT ("fault NODE") before the first check whose id holds ALICELAB_MIDRUN_BEFORE runs, in the
middle of the suite's run, as a real failure would arrive; writes what it did to ALICELAB_MIDRUN_DONE."""

from __future__ import annotations

import os

import pytest

_done = False


def pytest_runtest_setup(item: pytest.Item) -> None:
    global _done
    fault = os.environ.get("ALICELAB_MIDRUN_FAULT", "")
    before = os.environ.get("ALICELAB_MIDRUN_BEFORE", "")
    if _done or not fault or before not in item.nodeid:
        return
    _done = True
    from . import faults

    name, _, node = fault.partition(" ")
    said = faults.inject(name, node)
    done = os.environ.get("ALICELAB_MIDRUN_DONE")
    if done:  # what the test reads back: the fault arrived while the run was going
        with open(done, "w", encoding="utf-8") as fh:
            fh.write(f"{item.nodeid}: {said}\n")

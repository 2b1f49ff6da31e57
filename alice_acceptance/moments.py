"""The three moments' command-line choices, checked once (the values, :class:`~acceptance.targeting.Gate` and
:class:`~acceptance.targeting.Shard`, are the core's: the checks and their fixtures read them):

- ``--gate ACTION:NODE`` (rebuild, reboot, delete): may NODE be taken out now? Go (exit 0) or no-go (exit 1)
  with every reason; ``--prepare`` drains / moves leadership first; ``--allow-allocations JOB,...`` names the
  allocations the operator accepts to lose;
- ``--converge-timeout SECONDS``: after provisioning, wait check by check until the nodes converge;
- ``--shard I/N`` with ``--run-id ID``: a stable slice of the targets, for a nightly run spread over runners.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from acceptance.inventory import Node
from acceptance.targeting import Gate, Shard
from reports.summary import is_run_id

GATE_ACTIONS = ("rebuild", "reboot", "delete")
_RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,79}")


class MomentError(ValueError):
    """A bad moment option: one line with the option, the problem and the fix."""


def parse_gate(value: str, nodes: Sequence[Node], prepare: bool, allowed: Sequence[str]) -> Gate:
    action, _, name = value.partition(":")
    if action not in GATE_ACTIONS or not name:
        raise MomentError(f"--gate {value!r}: expected ACTION:NODE with ACTION one of {', '.join(GATE_ACTIONS)}; "
                          "fix: e.g. --gate rebuild:alimesos02")
    node = next((n for n in nodes if n.name == name and n.role in ("master", "agent")), None)
    if node is None:
        raise MomentError(f"--gate {value!r}: no node {name!r} in the inventory; fix: name a master or an agent")
    return Gate(action, node, prepare, tuple(allowed))


def parse_shard(value: str) -> Shard:
    m = re.fullmatch(r"(\d{1,4})/(\d{1,4})", value)
    if not m or not 1 <= int(m.group(1)) <= int(m.group(2)):
        raise MomentError(f"--shard {value!r}: expected I/N with 1 <= I <= N; fix: e.g. --shard 1/4")
    return Shard(int(m.group(1)), int(m.group(2)))


def parse_run_id(value: str) -> str:
    if not _RUN_ID.fullmatch(value) or not is_run_id(value):  # the report folder's rules: no ':', not latest*
        raise MomentError(f"--run-id {value[:40]!r}: use letters, digits and ._- (at most 80), not latest; fix: e.g. "
                          "--run-id nightly-20261201")
    return value

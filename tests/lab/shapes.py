"""Compares an emulator's answer with a documented sample: same keys, same JSON types.

Values are not compared, only shapes: a sample's dict keys must be present in the answer with the same
JSON type (extra keys are fine), `null` in the sample matches anything, lists compare their first elements.
Some objects are maps keyed by data (node attributes, task names, group names): their keys are not
required, and their values are compared with the sample's values when those are all of one type.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

# Keys whose values are maps keyed by data rather than structs with fixed fields.
FREE_MAPS = frozenset({
    "Attributes", "ChrootEnv", "Config", "Details", "Drivers", "HostNetworks", "HostVolumes", "HTTPAPIResponseHeaders",
    "Links", "Meta", "NodesAvailable", "Options", "Scores", "Summary", "Tags", "TaskResources", "TaskStates",
})
# Keys the product legitimately leaves null although the sample shows an object (e.g. a node never drained).
NULLABLE = frozenset({"LastDrain", "DrainStrategy"})


def json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def assert_same_shape(
    sample_body: Any,
    actual_body: Any,
    path: str = "$",
    *,
    free_maps: Collection[str] = FREE_MAPS,
    nullable: Collection[str] = NULLABLE,
) -> None:
    """Raises AssertionError naming the first path where `actual_body` differs in shape from `sample_body`."""
    _compare(sample_body, actual_body, path, "", free_maps, nullable)


def _compare(
    sample: Any, actual: Any, path: str, key: str, free_maps: Collection[str], nullable: Collection[str]
) -> None:
    if sample is None:
        return
    if actual is None and key in nullable:
        return
    st, at = json_type(sample), json_type(actual)
    assert st == at, f"{path}: expected {st} (like {str(sample)[:60]!r}), got {at} ({str(actual)[:60]!r})"
    if isinstance(sample, list):
        if sample and actual:
            _compare(sample[0], actual[0], f"{path}[0]", key, free_maps, nullable)
        return
    if not isinstance(sample, dict):
        return
    if key in free_maps:
        # A map keyed by data: compare the values it shares with the sample, and the others with the
        # sample's values when those are all of one kind.
        kinds = {json_type(v) for v in sample.values() if v is not None}
        template = next((v for v in sample.values() if v is not None), None) if len(kinds) == 1 else None
        for k, v in actual.items():
            ref = sample.get(k, template)
            _compare(ref, v, f"{path}.{k}", k, free_maps, nullable)
        return
    for k, v in sample.items():
        assert k in actual, f"{path}: key {k!r} missing (has {sorted(actual)[:30]})"
        _compare(v, actual[k], f"{path}.{k}", k, free_maps, nullable)

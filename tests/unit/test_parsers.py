"""The parsers of node output: what the tools write parses; anything else is Malformed (the check's outcome
error), never a healthy reading and never a bare exception (hypothesis over arbitrary text)."""

from __future__ import annotations

import contextlib
import datetime as dt
import math

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from acceptance.parsers import (
    Malformed,
    filespace_for,
    image_repository,
    node_clock,
    parse_df,
    parse_filespaces,
    parse_puppet_summary,
    parse_sched_log,
    unit_state,
)

from .fakessh import ANSWERS

SUMMARY = ANSWERS["master"]["cat -- /opt/puppetlabs/puppet/public/last_run_summary.yaml"][1]
FILESPACES = ANSWERS["master"]["dsmc query filespace"][1]
SCHED_LOG = ANSWERS["master"]["tail -n 400 -- /var/log/tsm/dsmsched.log"][1]
ANYTHING = st.text(max_size=400) | st.binary(max_size=200).map(lambda b: b.decode("latin-1"))


def test_what_the_tools_write_parses():
    s = parse_puppet_summary(SUMMARY)
    assert s.applied and s.clean and s.last_run > 1.7e9
    fs = filespace_for(parse_filespaces(FILESPACES), "/build/consul")
    assert fs is not None and fs.last_incr is not None
    event = parse_sched_log(SCHED_LOG)
    assert event is not None and event.success and event.objects_failed == 0
    assert parse_df("       Avail         Size\n1073741824 2147483648\n").avail == 1 << 30
    assert node_clock("1796137209 +0100\n") == (1796137209.0, dt.timedelta(hours=1))
    assert image_repository("registry.cern.ch/alisw/slc9-builder:latest") == "registry.cern.ch/alisw/slc9-builder"
    assert unit_state("nomad", {"LoadState": "loaded", "ActiveState": "active", "SubState": "running",
                                "UnitFileState": "enabled"}).describe() == "nomad is active/running, enabled"


@pytest.mark.parametrize("mutate", [
    lambda d: d["resources"].pop("failed"),
    lambda d: d["resources"].update(failed="3"),
    lambda d: d["resources"].update(failed=[1]),
    lambda d: d["resources"].update(failed=True),
    lambda d: d["resources"].update(failed=-1),
    lambda d: d.update(resources={}),
    lambda d: d.update(resources="none"),
    lambda d: d["events"].pop("failure"),
    lambda d: d["time"].update(last_run=math.inf),
    lambda d: d["time"].update(last_run=math.nan),
    lambda d: d["time"].update(last_run="yesterday"),
    lambda d: d.pop("time"),
])
def test_a_summary_that_puppet_never_writes_is_malformed(mutate):
    data = yaml.safe_load(SUMMARY)
    mutate(data)
    with pytest.raises(Malformed):
        parse_puppet_summary(yaml.safe_dump(data))


@settings(max_examples=300, deadline=None)
@given(text=ANYTHING)
def test_puppet_summary_of_anything_is_a_reading_or_malformed(text):
    try:
        s = parse_puppet_summary(text)
    except Malformed:
        return
    assert math.isfinite(s.last_run)
    assert not s.clean or (s.applied and s.failed == s.failed_to_restart == s.event_failures == 0)


@settings(max_examples=300, deadline=None)
@given(data=st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
                         lambda children: st.lists(children, max_size=4)
                         | st.dictionaries(st.sampled_from(["resources", "events", "time", "failed", "failure",
                                                            "failed_to_restart", "last_run", "version"]),
                                           children, max_size=5), max_leaves=20))
def test_puppet_summary_of_any_yaml_structure_is_a_reading_or_malformed(data):
    try:
        s = parse_puppet_summary(yaml.safe_dump(data))
    except Malformed:
        return
    assert isinstance(data, dict) and math.isfinite(s.last_run)
    if s.clean:  # a clean reading only from counts that are there and zero
        assert data["resources"]["failed"] == 0 and data["events"]["failure"] == 0


@settings(max_examples=300, deadline=None)
@given(text=ANYTHING)
def test_every_other_parser_reads_or_says_malformed(text):
    for parse in (parse_df, node_clock, parse_filespaces, parse_sched_log):
        with contextlib.suppress(Malformed):
            parse(text)


@given(props=st.dictionaries(st.sampled_from(["Id", "LoadState", "ActiveState", "SubState", "UnitFileState"]),
                             st.text(max_size=12), max_size=5))
def test_unit_state_needs_its_states(props):
    try:
        state = unit_state("docker", props)
    except Malformed:
        assert "LoadState" not in props or "ActiveState" not in props
        return
    assert state.active == (props["ActiveState"] == "active")

from __future__ import annotations

import pytest

from acceptance.inventory import Node
from acceptance.targeting import TargetError, select, split_patterns

NODES = [Node("alibuild01", "agent", kind="vm"), Node("alimesos01", "master"), Node("alibuild02", "agent", kind="vm"),
         Node("alimetal01", "agent", kind="metal"), Node("alimesos02", "master")]


def names(nodes):
    return [n.name for n in nodes]


def test_everything_masters_first():
    assert names(select(NODES)) == ["alimesos01", "alimesos02", "alibuild01", "alibuild02", "alimetal01"]


def test_roles():
    assert names(select(NODES, roles=["master"])) == ["alimesos01", "alimesos02"]
    assert names(select(NODES, roles=["agent"])) == ["alibuild01", "alibuild02", "alimetal01"]


def test_globs_comma_separated_and_repeated():
    patterns = split_patterns(["alibuild0*, alimesos02", "alimetal01"])
    assert patterns == ["alibuild0*", "alimesos02", "alimetal01"]
    assert names(select(NODES, patterns=patterns)) == ["alimesos02", "alibuild01", "alibuild02", "alimetal01"]


def test_globs_and_roles_intersect():
    assert names(select(NODES, roles=["agent"], patterns=["ali*01"])) == ["alibuild01", "alimetal01"]


def test_pattern_matching_nothing_is_an_error_with_a_suggestion():
    with pytest.raises(TargetError, match=r"'alibuild1'.*did you mean alibuild01"):
        select(NODES, patterns=["alibuild1"])


def test_unknown_role():
    with pytest.raises(TargetError, match="unknown role 'slave'"):
        select(NODES, roles=["slave"])

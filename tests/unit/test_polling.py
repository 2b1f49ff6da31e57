"""tests.polling.wait_until: the one "wait until it holds, or fail at the deadline" loop of the tests."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest

from tests.polling import wait_until


def answers(*values: object) -> Callable[[], object]:
    """A predicate giving `values` one call after another (the last one from then on), raising those that
    are exceptions."""
    it: Iterator[object] = iter(values)
    last: list[object] = [None]

    def predicate() -> object:
        value = next(it, last[0])
        last[0] = value
        if isinstance(value, BaseException):
            raise value
        return value

    return predicate


def test_returns_the_first_truthy_value():
    calls = []

    def predicate() -> list[int] | None:
        calls.append(1)
        return [len(calls)] if len(calls) == 3 else None

    assert wait_until(predicate, timeout=5, interval=0.01, what="three calls") == [3]
    assert len(calls) == 3


def test_a_truthy_value_at_once_does_not_sleep():
    start = time.monotonic()
    assert wait_until(lambda: "yes", timeout=5, interval=10, what="an answer") == "yes"
    assert time.monotonic() - start < 5


def test_falsy_values_are_not_yet():
    assert wait_until(answers(0, "", [], {}, False, None, 42), timeout=5, interval=0.01, what="42") == 42


def test_times_out_naming_what_and_the_last_value():
    with pytest.raises(AssertionError) as e:
        wait_until(answers(None, ""), timeout=0.3, interval=0.05, what="a Consul leader")
    assert str(e.value) == "timed out after 0.3s waiting for a Consul leader (last: '')"


def test_ignored_exceptions_are_not_yet_and_the_last_one_is_named():
    with pytest.raises(AssertionError) as e:
        wait_until(answers(ConnectionRefusedError("port 8500")), timeout=0.3, interval=0.05, what="Consul",
                   ignore=OSError)
    assert "Consul" in str(e.value) and "ConnectionRefusedError('port 8500')" in str(e.value)
    assert isinstance(e.value.__cause__, ConnectionRefusedError)  # its traceback is kept


def test_an_ignored_exception_then_a_value():
    assert wait_until(answers(KeyError("Leader"), ValueError("half a body"), "10.0.0.1"), timeout=5,
                      interval=0.01, what="a leader", ignore=(KeyError, ValueError)) == "10.0.0.1"


def test_other_exceptions_propagate_at_once():
    calls = []

    def predicate() -> bool:
        calls.append(1)
        raise ZeroDivisionError("a bug in the predicate")

    start = time.monotonic()
    with pytest.raises(ZeroDivisionError):
        wait_until(predicate, timeout=30, interval=0.01, what="anything", ignore=OSError)
    assert len(calls) == 1 and time.monotonic() - start < 30


def test_an_assertion_in_the_predicate_fails_at_once_unless_ignored():
    def predicate() -> bool:
        raise AssertionError("unexpected failures: ['node.ssh']")

    with pytest.raises(AssertionError, match="node.ssh"):
        wait_until(predicate, timeout=30, interval=0.01, what="anything")
    with pytest.raises(AssertionError, match=r"waiting for exact failures .*node\.ssh"):
        wait_until(predicate, timeout=0.2, interval=0.05, what="exact failures", ignore=AssertionError)


def test_the_error_raised_at_the_deadline_can_be_chosen():
    class LabError(RuntimeError):
        pass

    with pytest.raises(LabError, match="waiting for sshd on alibuild01"):
        wait_until(lambda: False, timeout=0.1, interval=0.05, what="sshd on alibuild01", error=LabError)
    with pytest.raises(SystemExit, match="^bench: timed out"):
        wait_until(lambda: False, timeout=0.1, interval=0.05, what="x", error=lambda m: SystemExit(f"bench: {m}"))


def test_tries_again_at_the_deadline():
    """The last try is at the deadline: a condition that holds by then is not reported as timed out."""
    start = time.monotonic()
    assert wait_until(lambda: time.monotonic() - start >= 0.5, timeout=0.5, interval=10, what="half a second")


def test_does_not_sleep_past_the_deadline_by_more_than_an_interval():
    timeout, interval = 0.5, 0.2
    start = time.monotonic()
    with pytest.raises(AssertionError):
        wait_until(lambda: False, timeout=timeout, interval=interval, what="never")
    took = time.monotonic() - start
    # it waits the whole timeout, and at most an interval more (generous: a loaded machine can be late)
    assert timeout <= took <= timeout + interval + 1.0, took


def test_a_long_interval_is_cut_at_the_deadline():
    start = time.monotonic()
    with pytest.raises(AssertionError):
        wait_until(lambda: None, timeout=0.3, interval=60, what="never")
    assert time.monotonic() - start < 30  # not the minute of the interval


def test_zero_timeout_tries_once():
    calls = []
    with pytest.raises(AssertionError):
        wait_until(lambda: calls.append(1), timeout=0, what="never")
    assert calls == [1]


@pytest.mark.parametrize(("timeout", "interval"), [(-1, 0.2), (1, 0), (1, -0.5)])
def test_nonsense_timing_is_refused(timeout, interval):
    with pytest.raises(ValueError, match="wait_until"):
        wait_until(lambda: True, timeout=timeout, interval=interval, what="x")

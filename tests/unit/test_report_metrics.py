"""metrics.prom parsed back with prometheus_client's parser."""

from __future__ import annotations

import os

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from reports.metrics import STATUS_VALUES, registry_for, write_metrics
from reports.summary import OUTCOMES, VERDICTS

from .test_report_synthetic import HOSTILE, build_summary


@pytest.fixture(scope="module")
def data():
    return build_summary(hostile=True).to_json()


@pytest.fixture(scope="module")
def families(data, tmp_path_factory):
    path = write_metrics(data, tmp_path_factory.mktemp("m") / "metrics.prom")
    text = path.read_text()
    return {f.name: f for f in text_string_to_metric_families(text)}, text


def samples(families, name):
    return families[0][name].samples


def test_every_record_has_its_status(data, families):
    status = samples(families, "acceptance_check_status")
    assert len(status) == len(data["records"])
    by_key = {(s.labels["check"], s.labels["node"]): s for s in status}
    for r in data["records"]:
        s = by_key[(r["check"], r["node"])]
        assert s.value == STATUS_VALUES[r["outcome"]]
        assert s.labels == {"cluster": "alice-prod", "moment": "nightly", "check": r["check"], "node": r["node"],
                            "severity": r["severity"]}
    assert by_key[("node.ping", HOSTILE)].value == 5  # failed; the label survives the round trip
    assert by_key[("agent.image.builder", "alibuild15")].value == 1  # remediated


def test_status_encoding_is_ordered_and_documented(families):
    assert STATUS_VALUES == {"passed": 0, "remediated": 1, "waived": 2, "not_run": 3, "blocked": 4, "failed": 5,
                             "error": 6}
    assert set(STATUS_VALUES) == set(OUTCOMES)
    doc = families[0]["acceptance_check_status"].documentation
    for outcome, value in STATUS_VALUES.items():
        assert f"{value} {outcome}" in doc


def test_counts_per_outcome_and_verdict(data, families):
    checks = {s.labels["outcome"]: s.value for s in samples(families, "acceptance_checks")}
    assert checks == {o: data["totals"][o] for o in OUTCOMES}
    verdicts = {s.labels["verdict"]: s.value for s in samples(families, "acceptance_remediations")}
    assert set(verdicts) == set(VERDICTS)
    assert verdicts["taken"] == 1 and verdicts["refused"] == 1 and verdicts["planned"] == 0


def test_run_gauges(data, families):
    def one(name):
        (s,) = samples(families, name)
        assert s.labels["cluster"] == "alice-prod" and s.labels["moment"] == "nightly"
        return s.value

    assert one("acceptance_run_duration_seconds") == pytest.approx(data["duration_s"])
    assert one("acceptance_run_exit_status") == 2
    assert one("acceptance_run_interrupted") == 1
    assert one("acceptance_run_healthy") == 0
    # 2026-11-26T03:00:00Z + the duration
    assert one("acceptance_run_timestamp_seconds") == pytest.approx(1795662000 + data["duration_s"], abs=0.01)
    (info,) = samples(families, "acceptance_run_info")
    assert info.labels["run_id"] == data["run_id"] and info.labels["schema"] == "2" and info.value == 1


def test_every_metric_has_help_and_is_a_gauge(families):
    fams, text = families
    assert set(fams) == {"acceptance_check_status", "acceptance_checks", "acceptance_remediations",
                         "acceptance_run_duration_seconds", "acceptance_run_timestamp_seconds",
                         "acceptance_run_exit_status", "acceptance_run_interrupted", "acceptance_run_healthy",
                         "acceptance_run_info"}
    for f in fams.values():
        assert f.type == "gauge" and f.documentation
    assert text.count("# HELP ") == len(fams)


def test_unknown_exit_status_leaves_the_sample_out(data):
    text = generate_latest(registry_for(dict(data, exit_status=None))).decode()
    fams = {f.name: f for f in text_string_to_metric_families(text)}
    assert fams["acceptance_run_exit_status"].samples == []


def test_written_atomically_beside_the_target(tmp_path, data):
    path = tmp_path / "textfile" / "acceptance_nightly.prom"
    write_metrics(data, path)
    write_metrics(data, path)
    assert os.listdir(path.parent) == ["acceptance_nightly.prom"]

"""A sharded night is a single night (the merge writes a report folder as a run does), shards never overwrite each
other, and the report folder keeps its history: index.html (a check x night grid), retention of old nightly run
folders, and ad-hoc runs that leave the nightly's latest/ alone."""

from __future__ import annotations

import json
import logging
import xml.etree.ElementTree as ET
from datetime import datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from reports.history import DEFAULT_KEEP, INDEX, night_of, prune
from reports.htmlview import anchor
from reports.junit import junit_xml, mangle
from reports.merge import main
from reports.summary import Record, Summary, write_summary
from reports.write import write_all

from .test_report_merge import split
from .test_report_synthetic import build_summary

FILES = ["junit.xml", "metrics.prom", "report.html", "summary.json"]


def night(day: int, outcomes: dict[tuple[str, str], str] | None = None, *, moment: str = "nightly",
          cluster: str = "alice-prod", run_id: str | None = None, shard: dict[str, int] | None = None) -> dict:
    """A small night on day ``day`` of November: node.ping and node.ssh on alibuild01 and 02, all passed unless
    ``outcomes`` says otherwise."""
    outcomes = outcomes or {}
    records = [Record(check=c, node=n, outcome=outcomes.get((c, n), "passed"),  # type: ignore[arg-type]
                      severity="critical", message="" if (c, n) not in outcomes else f"{c} said no on {n}",
                      role="agent", blocked_by="node.ssh" if outcomes.get((c, n)) == "blocked" else None,
                      test_id=f"checks/node.py::{c}[{n}]")
               for n in ("alibuild01", "alibuild02") for c in ("node.ping", "node.ssh")]
    rid = run_id or f"202611{day:02d}T030000Z-{day:06d}"
    return Summary(run_id=rid, cluster=cluster, inventory="/etc/alice/prod.yaml",
                   started=f"2026-11-{day:02d}T03:00:00+00:00", duration_s=60.0, records=records, exit_status=0,
                   moment=moment, shard=shard,  # type: ignore[arg-type]
                   nodes=[{"name": n, "role": "agent", "kind": "vm"} for n in ("alibuild01", "alibuild02")]).to_json()


def names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# --------------------------------------------------------------------------- sharded = single


@pytest.fixture
def full() -> dict:
    data = build_summary().to_json()
    data["finished"] = (datetime.fromisoformat(data["started"]) + timedelta(seconds=data["duration_s"])).isoformat()
    return data


def shard_summaries(full: dict, report: Path, count: int = 3, only: tuple[int, ...] | None = None) -> list[Path]:
    """Each shard's run as the plugin ends it (write_all into the shared shards folder); their summary paths."""
    shards = split(full, count)
    return [write_all(s, report / "shards")["summary"] for i, s in enumerate(shards, start=1)
            if only is None or i in only]


def test_a_merged_night_has_every_report_a_single_night_has(full, tmp_path, capsys):
    report = tmp_path / "report"
    previous = build_summary(run_id="20261125T030000Z-aaaaaa", started="2026-11-25T03:00:00+00:00",
                             overrides={("agent.build.free", "alibuild29"): "passed"})
    write_all(previous, report)
    paths = shard_summaries(full, report)
    assert main(["--report-dir", str(report), *map(str, paths)]) == 0
    run = report / full["run_id"]
    assert names(report) == sorted([full["run_id"], "20261125T030000Z-aaaaaa", INDEX, "latest", "shards"])
    assert names(run) == FILES and names(report / "latest") == FILES
    for name in FILES:
        assert (run / name).read_bytes() == (report / "latest" / name).read_bytes(), name
    merged = json.loads((run / "summary.json").read_text())
    single = write_all(full, tmp_path / "single", history=0)
    assert {k: v for k, v in merged.items() if k != "trend"} == \
        {k: v for k, v in json.loads(single["summary"].read_text()).items() if k != "trend"}
    assert merged["trend"]["previous_run"] == "20261125T030000Z-aaaaaa"  # not a shard: they are in shards/
    assert {"check": "agent.build.free", "node": "alibuild29", "outcome": "failed", "previous": "passed"} in \
        merged["trend"]["new_failures"]
    assert 'acceptance_run_info{cluster="alice-prod"' in (run / "metrics.prom").read_text()
    assert full["run_id"] in (run / "report.html").read_text()
    index = (report / INDEX).read_text()
    assert f'href="{full["run_id"]}/report.html"' in index
    assert str(run / "summary.json") in capsys.readouterr().out


def test_the_merged_junit_is_one_testcase_per_record_as_pytest_writes_them(full, tmp_path):
    report = tmp_path / "report"
    assert main(["--report-dir", str(report), *map(str, shard_summaries(full, report))]) == 0
    suite = ET.parse(report / "latest" / "junit.xml").getroot().find("testsuite")
    assert suite is not None
    cases = suite.findall("testcase")
    assert len(cases) == len(full["records"]) == int(suite.get("tests", "0"))
    totals = full["totals"]
    assert (suite.get("failures"), suite.get("errors"), suite.get("skipped")) == (
        str(totals["failed"]), str(totals["error"]), str(totals["blocked"] + totals["waived"] + totals["not_run"]))
    by_name = {(c.get("classname"), c.get("name")): c for c in cases}

    def case(check: str, node: str) -> ET.Element:
        role = next(r["role"] for r in full["records"] if (r["check"], r["node"]) == (check, node))
        return by_name[(f"checks.{role}", f"{check}[{node}]")]

    props = {p.get("name"): p.get("value") for p in case("node.ssh", "alibuild07").iter("property")}
    assert list(props) == ["check", "node", "role", "kind", "severity", "runbook", "remediation", "outcome",
                           "message", "blocked_by"]
    assert props["check"] == "node.ssh" and props["node"] == "alibuild07" and props["outcome"] == "failed"
    assert props["remediation"] == "node.hard-reboot" and props["blocked_by"] == ""
    failure = case("node.ssh", "alibuild07").find("failure")
    assert failure is not None and "Connection timed out" in (failure.get("message") or "")
    error = case("node.puppet.clean", "alimetal02").find("error")
    assert error is not None and "no puppet run summary" in (error.get("message") or "")
    blocked = case("node.puppet.clean", "alibuild07").find("skipped")
    assert blocked is not None and blocked.get("message") == "blocked by node.ssh: node.ssh failed on this node"
    waived = case("node.ping", "alibuild12").find("skipped")
    assert waived is not None and waived.get("message") == "waived: disk swap INC0123 (until 2026-12-31)"
    not_run = case("node.puppet.clean", "alimetal04").find("skipped")
    assert not_run is not None and (not_run.get("message") or "").startswith("not run: ")
    remediated = case("agent.image.builder", "alibuild15")
    assert [c.tag for c in remediated] == ["properties"]  # a pass, as CI reads it


def test_junit_survives_what_xml_cannot_hold_and_mangles_ids_as_pytest():
    data = night(26, {("node.ssh", "alibuild01"): "failed"})
    data["records"][1]["message"] = "ssh said \x1b[31mno\x00 <&> \"q\""
    root = ET.fromstring(junit_xml(data))
    failure = next(root.iter("failure"))
    assert failure.get("message") == "ssh said #x1B[31mno#x00 <&> \"q\""
    assert mangle("checks/agent.py::agent.units.docker[alibuild01]") == \
        ("checks.agent", "agent.units.docker[alibuild01]")
    assert mangle("node.ping[a1]") == ("", "node.ping[a1]")


def test_shards_sharing_a_report_dir_never_overwrite_each_other_nor_latest(full, tmp_path):
    report = tmp_path / "report"
    write_all(build_summary(run_id="20261125T030000Z-aaaaaa", started="2026-11-25T03:00:00+00:00"), report)
    before = {name: (report / "latest" / name).read_bytes() for name in names(report / "latest")}
    index = (report / INDEX).read_bytes()
    shards = split(full, 2)
    paths = [write_all(s, report) for s in shards]
    for shard, written in zip(shards, paths, strict=True):
        assert "latest" not in written and "index" not in written
        assert names(written["summary"].parent) == ["metrics.prom", "report.html", "summary.json"]
        assert json.loads(written["summary"].read_text())["run_id"] == shard["run_id"]
    assert paths[0]["summary"].parent != paths[1]["summary"].parent
    assert {name: (report / "latest" / name).read_bytes() for name in names(report / "latest")} == before
    assert (report / INDEX).read_bytes() == index  # a shard does not rewrite the night's index: the merge does
    assert main(["--report-dir", str(report), *(str(p["summary"]) for p in paths)]) == 0
    latest = json.loads((report / "latest" / "summary.json").read_text())
    assert latest["run_id"] == full["run_id"] and latest["shard"] is None
    assert latest["trend"]["compared_runs"] == ["20261125T030000Z-aaaaaa"]  # the shards beside it are skipped
    grid = Grid.of(report / INDEX)
    assert [h.split("/")[0] for h in grid.nights] == [full["run_id"], "20261125T030000Z-aaaaaa"]


def test_a_missing_shard_is_named_in_the_merged_night(full, tmp_path):
    full = build_summary(interrupted=False).to_json()
    report = tmp_path / "report"
    assert main(["--report-dir", str(report), *map(str, shard_summaries(full, report, only=(1, 3)))]) == 0
    merged = json.loads((report / "latest" / "summary.json").read_text())
    warning = "shard 2/3 missing: the nodes of that shard were not checked"
    assert merged["interrupted"] and not merged["healthy"] and warning in merged["warnings"]
    assert warning in (report / "latest" / "report.html").read_text()
    assert "INCOMPLETE" in (report / INDEX).read_text()


def test_a_lone_shard_merged_does_not_take_the_shards_folder(full, tmp_path):
    report = tmp_path / "report"
    (path,) = shard_summaries(full, report, count=2, only=(1,))
    shard_page = (path.parent / "report.html").read_bytes()
    assert main(["--report-dir", str(report / "shards"), str(path)]) == 0
    assert (report / "shards" / full["run_id"] / "summary.json").is_file()
    assert (path.parent / "report.html").read_bytes() == shard_page


@pytest.mark.parametrize(("argv", "what"), [
    (["--keep", "3"], "--keep needs --report-dir"),
    (["--report-dir", "R", "--history-dir", "H"], "--history-dir goes with OUT_DIR"),
    (["--report-dir", "R", "--keep", "0"], "--keep 0"),
])
def test_merge_options_that_do_not_go_together_are_exit_4(tmp_path, capsys, argv, what):
    argv = [str(tmp_path / a) if a in ("R", "H") else a for a in argv]
    assert main([*argv, str(tmp_path / "out"), str(tmp_path / "s.json")]) == 4
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and what in err and "; fix: " in err
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- index.html


class Grid(HTMLParser):
    """What index.html shows: the nights' column links (newest first), each row's cells (class, letter, link),
    and the links of the nights' table."""

    def __init__(self) -> None:
        super().__init__()
        self.nights: list[str] = []
        self.rows: dict[str, list[tuple[str, str, str]]] = {}
        self.listed: list[str] = []
        self.csp = ""
        self._tables: list[str] = []
        self._in_night = False
        self._naming: str | None = None
        self._row = ""
        self._cell: list[str] | None = None

    @classmethod
    def of(cls, path: Path) -> Grid:
        grid = cls()
        grid.feed(path.read_text(encoding="utf-8"))
        return grid

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        classes = a.get("class", "").split()
        if tag == "meta" and a.get("http-equiv") == "Content-Security-Policy":
            self.csp = a["content"]
        elif tag == "table":
            self._tables.append(" ".join(classes))
        elif tag == "th" and "night" in classes:
            self._in_night = True
        elif tag == "th" and "key" in classes:
            self._naming = ""
        elif tag == "td" and "c" in classes:
            self._cell = [next(c for c in classes if c != "c"), "", ""]
        elif tag == "a" and self._in_night:
            self.nights.append(a["href"])
        elif tag == "a" and self._cell is not None:
            self._cell[2] = a["href"]
        elif tag == "a" and self._tables and "nights" in self._tables[-1]:
            self.listed.append(a["href"])

    def handle_endtag(self, tag: str) -> None:
        if tag == "table":
            self._tables.pop()
        elif tag == "th":
            self._in_night = False
            if self._naming:  # the header row's corner cell names no row
                self._row = self._naming.strip()
                self.rows[self._row] = []
            self._naming = None
        elif tag == "td" and self._cell is not None:
            self.rows[self._row].append((self._cell[0], self._cell[1], self._cell[2]))
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell[1] += data.strip()
        elif self._naming is not None:
            self._naming += data


SSH1 = ("node.ssh", "alibuild01")
PING2 = ("node.ping", "alibuild02")


def test_the_index_lists_the_nights_newest_first_with_the_grid(tmp_path):
    report = tmp_path / "report"
    flaps = {21: "failed", 22: "passed", 23: "failed", 24: "remediated"}
    for day in (23, 21, 24, 22):  # not in order: the index sorts by start
        write_all(night(day, {SSH1: flaps[day], PING2: "blocked" if day == 24 else "passed"}), report, history=0)
    grid = Grid.of(report / INDEX)
    ids = [f"202611{d}T030000Z-0000{d}" for d in (24, 23, 22, 21)]
    assert grid.nights == [f"{i}/report.html" for i in ids] and grid.listed == grid.nights
    assert set(grid.rows) == {"node.ssh[alibuild01]", "node.ping[alibuild02]"}  # never failing: no row
    assert grid.rows["node.ssh[alibuild01]"] == [
        ("o-remediated", "R", f"{ids[0]}/report.html#{anchor(*SSH1)}"),
        ("o-failed", "F", f"{ids[1]}/report.html#{anchor(*SSH1)}"),
        ("o-passed", "", f"{ids[2]}/report.html#{anchor(*SSH1)}"),
        ("o-failed", "F", f"{ids[3]}/report.html#{anchor(*SSH1)}")]
    assert grid.rows["node.ping[alibuild02]"][0] == ("o-blocked", "B", f"{ids[0]}/report.html#{anchor(*PING2)}")
    assert "script-src 'none'" in grid.csp and "default-src 'none'" in grid.csp
    page = (report / INDEX).read_text()
    assert '<tr class="flap"><th class="key" title="node.ssh[alibuild01]">' in page  # 3 changes in 4 nights
    assert "http" not in page.replace('http-equiv', "")  # no external resource


def test_the_index_shows_whole_nights_of_its_cluster_only_and_escapes_names(tmp_path):
    report = tmp_path / "report"
    write_all(night(20, cluster="alice-test"), report, history=0)
    write_all(night(21, moment="check", run_id="20261121T030000Z-check1"), report, history=0)
    write_all(night(22, {SSH1: "failed"}, run_id="20261122T030000Z-s1of2", shard={"index": 1, "count": 2}), report)
    hostile = night(23, {("node.ping", "<img src=x onerror=alert(1)>"): "failed"})
    hostile["records"].append(dict(hostile["records"][0], node="<img src=x onerror=alert(1)>", outcome="failed"))
    write_all(hostile, report, history=0)
    grid = Grid.of(report / INDEX)
    assert grid.nights == [f"{hostile['run_id']}/report.html"]
    assert "<img" not in (report / INDEX).read_text() and "node.ping[<img src=x onerror=alert(1)>]" in grid.rows


def test_a_night_without_failures_says_so(tmp_path):
    paths = write_all(night(26), tmp_path, history=0)
    page = paths["index"].read_text()
    assert "Every check passed on every node, every night." in page and Grid.of(paths["index"]).rows == {}


# --------------------------------------------------------------------------- retention


def test_retention_removes_only_old_nightly_run_folders(tmp_path):
    report = tmp_path / "report"
    for day in range(1, 6):
        write_all(night(day), report, history=0)
    write_summary(night(1, run_id="20261101T030000Z-000001-s1of2", shard={"index": 1, "count": 2}), report)
    write_summary(night(1, run_id="20261101T030000Z-000009-s2of2", shard={"index": 2, "count": 2}), report)  # alone
    kept = {
        "check": night(1, moment="check", run_id="20261101T030000Z-check1"),
        "other cluster": night(1, cluster="alice-test", run_id="20261101T030000Z-other1"),
    }
    for data in kept.values():
        write_summary(data, report)
    odd = {"20261101T030000Z-corrupt": "{not json", "20261101T030000Z-renamed": json.dumps(night(1))}
    for name, text in odd.items():
        (report / name).mkdir()
        (report / name / "summary.json").write_text(text)
    (report / "20261101T030000Z-empty").mkdir()
    (report / "20261101T030000Z-file").write_text("not a folder")
    elsewhere = tmp_path / "elsewhere" / "20261101T030000Z-linked"
    write_summary(night(1, run_id="20261101T030000Z-linked"), elsewhere.parent)
    (report / "20261101T030000Z-linked").symlink_to(elsewhere, target_is_directory=True)
    paths = write_all(night(6), report, keep=3, history=0)
    assert names(report) == sorted([
        "20261104T030000Z-000004", "20261105T030000Z-000005", "20261106T030000Z-000006",
        "20261101T030000Z-check1", "20261101T030000Z-other1", *odd, "20261101T030000Z-empty",
        "20261101T030000Z-file", "20261101T030000Z-linked", "latest", INDEX])
    assert (elsewhere / "summary.json").is_file()
    assert [h.split("/")[0] for h in Grid.of(paths["index"]).listed] == [
        "20261106T030000Z-000006", "20261105T030000Z-000005", "20261104T030000Z-000004"]
    assert DEFAULT_KEEP == 30


def test_a_run_folder_swapped_for_a_symlink_is_never_followed(tmp_path, caplog):
    """Between the scan and the removal a folder may become a symlink: rmtree, by name in the open report folder,
    refuses it; the link and its target stay."""
    report, victim = tmp_path / "report", tmp_path / "victim"
    report.mkdir()
    victim.mkdir()
    (victim / "keep.txt").write_text("keep")
    old, current = night(1), night(2)
    (report / old["run_id"]).symlink_to(victim, target_is_directory=True)
    with caplog.at_level(logging.WARNING):
        assert prune(report, [night_of(old), night_of(current)], current, keep=1) == []
    assert (victim / "keep.txt").read_text() == "keep" and (report / old["run_id"]).is_symlink()
    assert any("not removed" in r.getMessage() for r in caplog.records)


def test_a_shards_run_prunes_the_shards_folder_by_nights(tmp_path):
    shards = tmp_path / "shards"
    for day in range(1, 4):
        for i in (1, 2):
            write_all(night(day, run_id=f"202611{day:02d}T030000Z-night-s{i}of2", shard={"index": i, "count": 2}),
                      shards, keep=2, history=0)
    assert names(shards) == [f"202611{d:02d}T030000Z-night-s{i}of2" for d in (2, 3) for i in (1, 2)]


# --------------------------------------------------------------------------- ad-hoc runs


def test_a_check_run_does_not_replace_the_nightlys_latest(tmp_path):
    report = tmp_path / "report"
    write_all(night(25), report, history=0)
    before = {p.name: p.read_bytes() for p in (report / "latest").iterdir()}
    index = (report / INDEX).read_bytes()
    for day, moment in ((26, "check"), (27, "provision"), (28, "check")):
        paths = write_all(night(day, moment=moment, run_id=f"202611{day}T100000Z-{moment}"), report)
        assert paths["latest"] == report / f"latest-{moment}" and "index" not in paths
    assert {p.name: p.read_bytes() for p in (report / "latest").iterdir()} == before
    assert (report / INDEX).read_bytes() == index
    assert json.loads((report / "latest-check" / "summary.json").read_text())["run_id"] == "20261128T100000Z-check"
    trend: Any = json.loads((report / "latest-check" / "summary.json").read_text())["trend"]
    assert trend["compared_runs"] == ["20261126T100000Z-check"]  # latest-check/ is no run of its own


def test_without_a_nightly_an_ad_hoc_run_keeps_latest(tmp_path):
    paths = write_all(night(26, moment="check"), tmp_path)
    assert paths["latest"] == tmp_path / "latest" and names(tmp_path) == ["20261126T030000Z-000026", "latest"]
    assert write_all(night(27, moment="gate"), tmp_path)["latest"] == tmp_path / "latest"

"""From pytest reports to the run's records, and from the records to the summary the reports are written from.

Each phase report of a check carries its :class:`~reports.outcomes.CheckVerdict` (acceptance.verdicts), across
xdist too; the recorder keeps one record per check and node. A check that was collected but has no record at the
end (an interrupted run) is recorded ``not_run``.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from typing import cast

import pytest

from acceptance.run import Results, Run
from reports.outcomes import verdict_of
from reports.summary import NodeTransport, Record, RemediationEntry, Summary


def record_of(report: pytest.TestReport) -> Record | None:
    verdict = verdict_of(report)
    if verdict is None:
        return None
    return Record(check=verdict.check, node=verdict.node, outcome=verdict.outcome, kind=verdict.kind,
                  severity=verdict.severity, message=verdict.message, duration_s=round(report.duration, 3),
                  blocked_by=verdict.root, role=verdict.role, runbook=verdict.runbook,
                  remediation=verdict.remediation, test_id=report.nodeid, first_message=verdict.first_message,
                  remediation_detail=verdict.remediation_detail)


class Recorder:
    """Registered per run: one record per check and node. Under xdist the controller receives every worker's
    reports (verdicts included) through this hook, so its records are complete."""

    def __init__(self, results: Results) -> None:
        self.results = results
        self.collected: dict[str, dict[str, str]] = {}  # test id -> the item's static properties

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when == "setup" and report.passed:
            return  # the check has not run yet: an interruption now leaves it not_run, never passed
        if str(report.outcome) == "rerun":
            return  # an attempt before a remediation, or the remediation itself: the re-check is the final word
        record = record_of(report)
        if record is not None:
            self.results.records.add(record)

    def expect(self, items: Iterable[pytest.Item]) -> None:
        for item in items:
            props = dict(item.user_properties)
            if "check" in props:
                self.collected[item.nodeid] = {k: str(v) for k, v in props.items()}

    def expect_ids(self, ids: Iterable[str]) -> None:
        """xdist controller: the workers' collection, as test ids ``<path>::<check>[<node>]``."""
        for test_id in ids:
            name = test_id.rsplit("::", 1)[-1]
            check, _, rest = name.partition("[")
            if rest.endswith("]"):
                self.collected.setdefault(test_id, {"check": check, "node": rest[:-1]})

    def not_run(self) -> list[Record]:
        seen = {r.test_id for r in self.results.records}
        return [Record(check=p["check"], node=p["node"], outcome="not_run", severity=p.get("severity", ""),
                       kind=p.get("kind") or None,
                       message="not run: the run ended before this check", role=p.get("role", ""),
                       runbook=p.get("runbook", ""), remediation=p.get("remediation") or None, test_id=test_id)
                for test_id, p in self.collected.items() if test_id not in seen]


def summary_of(run: Run, recorder: Recorder, exitstatus: int, remediations: Sequence[RemediationEntry],
               api_requests: Mapping[str, int]) -> Summary:
    """The summary of the run's parts: the core's, remediation's audit and the application's request counts."""
    info, scope, records = run.info, run.scope, run.results.records
    missing = recorder.not_run()
    for record in missing:
        records.add(record)
    nodes = []
    for n in scope.targets:
        waiver = scope.waivers.get(n.name)
        nodes.append({"name": n.name, "role": n.role, "kind": n.kind, "address": n.address, "source": n.source,
                      "maintenance": {"reason": waiver.reason, "until": waiver.until.isoformat()} if waiver else None})
    interrupted = int(exitstatus) == int(pytest.ExitCode.INTERRUPTED) or bool(missing)
    counters = run.connections.counters
    return Summary(run_id=info.run_id, cluster=scope.inventory.cluster, inventory=str(scope.inventory.path),
                   started=info.started.isoformat(), duration_s=time.monotonic() - info.t0,
                   records=list(records), exit_status=int(exitstatus), warnings=scope.warnings, nodes=nodes,
                   moment=scope.moment, interrupted=interrupted, remediations=list(remediations),
                   shard={"index": scope.shard.index, "count": scope.shard.count} if scope.shard else None,
                   transport={"nodes": {name: cast(NodeTransport, c) for name, c in counters.items()},
                              "api_requests": dict(api_requests)})

"""junit.xml from a summary's records, for what has no pytest session of its own (a merged night).

One testcase per record, as pytest's junitxml writes a run of the suite (family xunit2): ``classname`` and ``name``
from the test id as pytest mangles it (``checks/agent.py::agent.units.docker[alibuild01]`` -> ``checks.agent`` and
``agent.units.docker[alibuild01]``), the properties the plugin gives every item (check, node, role, kind, severity,
runbook, remediation, then the verdict's outcome, message and blocked_by: ``acceptance.verdicts.JUNIT_KEYS``), and
the outcome as CI reads it: ``failed`` a <failure>, ``error`` an <error>, ``blocked``, ``waived`` and ``not_run``
<skipped> with a message that says which and why; ``passed`` and ``remediated`` pass.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from typing import Any

from reports.summary import as_json

STATIC_KEYS = ("check", "node", "role", "kind", "severity", "runbook", "remediation")
SKIPPED = frozenset({"blocked", "waived", "not_run"})
# characters XML 1.0 cannot hold: written as #xNN, as pytest's junitxml does (a message may quote a terminal)
_ILLEGAL = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _text(value: Any) -> str:
    return _ILLEGAL.sub(lambda m: f"#x{ord(m.group()):02X}", "" if value is None else str(value))


def mangle(test_id: str) -> tuple[str, str]:
    """(classname, name) of a pytest node id, as pytest's junitxml makes them."""
    path, bracket, params = test_id.partition("[")
    names = path.split("::")
    names[0] = re.sub(r"\.py$", "", names[0].replace("/", "."))
    names[-1] += bracket + params
    return ".".join(names[:-1]), names[-1]


def skip_message(record: Mapping[str, Any]) -> str:
    """Why a check did not run, readable on its own; a real run's message already says it (not repeated)."""
    outcome, message = str(record.get("outcome")), str(record.get("message") or "")
    if outcome == "blocked":
        label = f"blocked by {record.get('blocked_by')}" if record.get("blocked_by") else "blocked"
    else:
        label = "waived" if outcome == "waived" else "not run"
    if message.startswith(label):
        return message
    return f"{label}: {message}" if message else label


def testcase(record: Mapping[str, Any]) -> ET.Element:
    test_id = str(record.get("test_id") or f"{record.get('check')}[{record.get('node')}]")
    classname, name = mangle(test_id)
    case = ET.Element("testcase", classname=_text(classname), name=_text(name),
                      time=f"{float(record.get('duration_s') or 0.0):.3f}")
    properties = ET.SubElement(case, "properties")
    values = [*((k, record.get(k)) for k in STATIC_KEYS),
              ("outcome", record.get("outcome")), ("message", record.get("message")),
              ("blocked_by", record.get("blocked_by"))]
    for key, value in values:
        ET.SubElement(properties, "property", name=key, value=_text(value))
    outcome, message = str(record.get("outcome")), _text(record.get("message"))
    if outcome in ("failed", "error"):
        tag = "failure" if outcome == "failed" else "error"
        ET.SubElement(case, tag, message=message or outcome).text = message or outcome
    elif outcome in SKIPPED:
        why = _text(skip_message(record))
        ET.SubElement(case, "skipped", type="pytest.skip", message=why).text = why
    return case


def junit_xml(summary: Mapping[str, Any]) -> str:
    """The junit.xml of ``summary`` (its JSON form, schema 2): one testsuite, one testcase per record."""
    data = as_json(summary)
    records = list(data.get("records") or ())
    totals = data.get("totals") or {}
    suite = ET.Element("testsuite", name="pytest", errors=str(totals.get("error", 0)),
                       failures=str(totals.get("failed", 0)),
                       skipped=str(sum(int(totals.get(o, 0)) for o in SKIPPED)), tests=str(len(records)),
                       time=f"{float(data.get('duration_s') or 0.0):.3f}", timestamp=_text(data.get("started")))
    for record in records:
        suite.append(testcase(record))
    root = ET.Element("testsuites", name="pytest tests")
    root.append(suite)
    return '<?xml version="1.0" encoding="utf-8"?>' + ET.tostring(root, encoding="unicode") + "\n"

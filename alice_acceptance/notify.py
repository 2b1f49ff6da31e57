"""A message to a Mattermost channel when a nightly run changed something: new failures, recoveries, and the
checks remediation gave up on (``needs a human``), each with its node, check, one-line reason and a link to its
row of the report. Nothing is sent when nothing changed, nor for a shard (the merge of the night speaks for it),
nor for any other moment.

Configured in the inventory (``notify.mattermost``: :class:`~acceptance.inventory.MattermostSettings`); the
webhook's URL, which embeds its key, comes from the environment variable the inventory names and is remembered
as a secret (:mod:`acceptance.redaction`) before anything can print it.

Sending never decides the run: bounded in time (``timeout_s`` for everything, one retry only when no connection
could be made), on the suite's hardened transport (no redirect followed, no proxy from the environment, the
answer capped); a failure is one redacted warning line, and the run's exit status is what it was.

- :func:`message`: the summary's JSON form (its ``trend``, ``records`` and ``remediations``) -> markdown, or None;
- :func:`send`: one POST of Mattermost's incoming-webhook JSON;
- :func:`notify_summary`: both, for a whole nightly run, never raising;
- :func:`after_run` (the plugin, at the end of a run) and :func:`after_merge` (``alice-acceptance merge``, given the
  merged summary's path).
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import pytest
import requests
import urllib3

from acceptance.clients.transport import Aborted, TooLarge, deadline, excerpt, new_session
from acceptance.inventory import InventoryError, MattermostSettings, load_inventory
from acceptance.printable import escape_controls, shown
from acceptance.redaction import redact, remember
from reports.htmlview import anchor
from reports.outcomes import OUTCOMES
from reports.pytest_html_hooks import HtmlReport
from reports.read import load_summary
from reports.summary import SummaryError, natural_key

log = logging.getLogger(__name__)

Say = Callable[[str], None]

MAX_ITEMS = 15  # per section: a bad night links to the report rather than flooding the channel
REASON_LIMIT = 160
MAX_TEXT = 12_000  # Mattermost refuses posts beyond 16,383 characters
MAX_ANSWER = 64 * 1024  # Mattermost answers "ok"
# remote text is never markdown: it goes in code spans, which a backtick would close; '<' and '>' go too, for the
# Slack-style <!channel> a webhook post may expand; no ASCII '@' is left: no @channel, @all, @here or @someone
_INERT = str.maketrans({"`": "'", "@": "\uff20", "<": "\u2039", ">": "\u203a"})
_URL_SAFE = ":/?#&=%~._-+,;!$*'"  # what a report link keeps; the rest is percent-encoded (no ')', '<', '@')
SEVERITIES = ("critical", "major", "minor")
_NOT_CONNECTED = (urllib3.exceptions.ConnectTimeoutError, urllib3.exceptions.NewConnectionError)


class NotifyError(Exception):
    """Why a message was not sent: one line, never the webhook's URL."""


# --------------------------------------------------------------------------- the message


def notifiable(summary: Mapping[str, Any]) -> bool:
    """A whole nightly run: not a shard (the merged night is notified), not another moment."""
    return summary.get("moment") == "nightly" and not summary.get("shard")


def _code(value: object, limit: int = REASON_LIMIT) -> str:
    text = " ".join(shown(str(value if value is not None else ""), limit).split()).translate(_INERT)
    return f"`{text or '-'}`"


def _outcome(value: object) -> str:
    return str(value) if value in OUTCOMES else _code(value, 20)


def _link(report_url: str | None, check: object = None, node: object = None) -> str:
    if not report_url:
        return ""
    target = report_url if check is None else f"{report_url}#{anchor(str(check), str(node))}"
    return f"[report]({quote(target, safe=_URL_SAFE)})"


def _plural(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def _escalations(remediations: Iterable[Any]) -> list[Mapping[str, Any]]:
    """The run's "needs a human" decisions, the last one for each check and node."""
    last = {(str(e.get("node")), str(e.get("check"))): e for e in remediations
            if isinstance(e, Mapping) and e.get("verdict") == "escalated"}
    return [last[k] for k in sorted(last, key=lambda k: (natural_key(k[0]), k[1]))]


def _section(title: str, lines: list[str], report_url: str | None) -> list[str]:
    if not lines:
        return []
    more = len(lines) - MAX_ITEMS
    tail = [f"- ... and {more} more: see the {_link(report_url) or 'report'}"] if more > 0 else []
    return ["", f"**{title}**", *lines[:MAX_ITEMS], *tail]


def _entries(found: Any) -> list[Mapping[str, Any]]:
    return [e for e in found if isinstance(e, Mapping)] if isinstance(found, list | tuple) else []


def _trend(summary: Mapping[str, Any]) -> Mapping[str, Any]:
    found = summary.get("trend")
    return found if isinstance(found, Mapping) else {}


def changes(summary: Mapping[str, Any]) -> str:
    """'2 new failures, 1 recovery, 1 needs a human'; empty when nothing changed."""
    trend = _trend(summary)
    new, fixed = len(_entries(trend.get("new_failures"))), len(_entries(trend.get("fixed")))
    humans = len(_escalations(summary.get("remediations") or ()))
    return ", ".join(c for c in (
        _plural(new, "new failure", "new failures") if new else "",
        _plural(fixed, "recovery", "recoveries") if fixed else "",
        f"{humans} {'needs' if humans == 1 else 'need'} a human" if humans else "") if c)


def message(summary: Mapping[str, Any], report_url: str | None) -> str | None:
    """The markdown message of a run's changes (``summary``: its JSON form, ``trend`` computed), or None when
    nothing changed. ``report_url``: the report, ``{run_id}`` standing for the run's id; each item links to its
    row there. Pure: it reads nothing but its arguments."""
    trend = _trend(summary)
    records = {(str(r.get("check")), str(r.get("node"))): r for r in summary.get("records") or ()
               if isinstance(r, Mapping)}
    taken = {(str(e.get("check")), str(e.get("node"))): e for e in summary.get("remediations") or ()
             if isinstance(e, Mapping) and e.get("verdict") == "taken"}
    new, fixed = (_entries(trend.get(key)) for key in ("new_failures", "fixed"))
    humans = _escalations(summary.get("remediations") or ())
    if not (new or fixed or humans):
        return None
    url = report_url.replace("{run_id}", str(summary.get("run_id", ""))) if report_url else None

    def head(e: Mapping[str, Any]) -> str:
        return f"- {_code(e.get('node'), 80)} {_code(e.get('check'), 120)}"

    def was(e: Mapping[str, Any]) -> str:
        return f"was {_outcome(e['previous'])}" if e.get("previous") else "not checked in the previous run"

    failures = []
    for e in new:
        r = records.get((str(e.get("check")), str(e.get("node"))), {})
        severity = f" {r['severity'] if r.get('severity') in SEVERITIES else _code(r.get('severity'), 20)}" \
            if r.get("severity") else ""
        reason = r.get("message") or "no message"
        failures.append(f"{head(e)} **{_outcome(e.get('outcome'))}**{severity} ({was(e)}): {_code(reason)} "
                        f"{_link(url, e.get('check'), e.get('node'))}".rstrip())
    recoveries = []
    for e in fixed:
        how = "passes again"
        done = taken.get((str(e.get("check")), str(e.get("node"))))
        if e.get("outcome") == "remediated" and done is not None:
            how = f"{_code(done.get('action'), 60)}: {_code(done.get('reason'))}"
        recoveries.append(f"{head(e)} {_outcome(e.get('outcome'))} ({was(e)}): {how} "
                          f"{_link(url, e.get('check'), e.get('node'))}".rstrip())
    escalated = [f"{head(e)} {_code(e.get('action'), 60)}: {_code(e.get('reason'))} "
                 f"{_link(url, e.get('check'), e.get('node'))}".rstrip() for e in humans]

    icon = ":rotating_light:" if new or humans else ":white_check_mark:"
    still, flapping = len(trend.get("still_failing") or ()), len(trend.get("flapping") or ())
    facts = [f"run {_code(summary.get('run_id'), 140)}", f"still failing: {still}", f"flapping: {flapping}"]
    if summary.get("interrupted"):
        facts.append("**interrupted**: not every check ran")
    lines = [f"#### {icon} {_code(summary.get('cluster'), 80)} nightly: {changes(summary)}",
             " · ".join([*facts, *([_link(url)] if url else [])]),
             *_section(":red_circle: New failures", failures, url),
             *_section(":white_check_mark: Recovered", recoveries, url),
             *_section(":sos: Needs a human", escalated, url)]
    text = "\n".join(lines)
    if len(text) > MAX_TEXT:
        text = text[: max(text.rfind("\n", 0, MAX_TEXT - 80), 0)] + "\n- ... cut here: see the report"
    return text


def payload(text: str, settings: MattermostSettings) -> dict[str, str]:
    """Mattermost's incoming-webhook JSON (``username`` and ``icon_url`` count only where the server lets
    integrations override them; ``channel`` only where the webhook is not locked to its own)."""
    out = {"text": text, "username": settings.username}
    if settings.channel:
        out["channel"] = settings.channel
    if settings.icon_url:
        out["icon_url"] = settings.icon_url
    return out


# --------------------------------------------------------------------------- sending


def webhook_url(settings: MattermostSettings, env: Mapping[str, str] | None = None) -> str:
    """The webhook's URL from the environment, remembered as a secret (whole, and its key: the last part of its
    path) before anything could show it; :class:`NotifyError` when unset or not an http(s) URL."""
    env = os.environ if env is None else env
    url = env.get(settings.url_env, "").strip()
    if not url:
        raise NotifyError(f"{settings.url_env} is not set (the webhook's URL comes from the environment)")
    remember(url, url.rstrip("/").rsplit("/", 1)[-1])
    try:
        parts = urlsplit(url)
        ok = parts.scheme in ("http", "https") and bool(parts.hostname) and url.isprintable() and " " not in url
    except ValueError:
        ok = False
    if not ok:
        raise NotifyError(f"{settings.url_env} is not an http(s) URL")
    return url


def _reason(exc: requests.RequestException) -> str:
    """What went wrong, in words of its own: an exception's text would quote the URL."""
    if isinstance(exc, Aborted | TooLarge):
        return str(exc)  # the transport's own words, which quote nothing
    text = str(exc).lower()
    for pattern, reason in (("refused", "connection refused"), ("name or service", "unknown host name"),
                            ("resolution", "unknown host name"), ("no route", "no route to host"),
                            ("reset", "connection reset"), ("timed out", "timed out"),
                            ("disconnected", "closed the connection without answering"),
                            ("certificate", "TLS certificate not trusted"), ("ssl", "TLS error")):
        if pattern in text:
            return reason
    return type(exc).__name__


def _not_connected(exc: requests.RequestException) -> bool:
    """No connection was made, so nothing was posted: a retry cannot post the message twice."""
    reason = exc.args[0] if exc.args else None
    return isinstance(exc, requests.ConnectionError) and isinstance(getattr(reason, "reason", reason), _NOT_CONNECTED)


def send(url: str, body: Mapping[str, Any], timeout: float, ca: Path | None = None) -> None:
    """POST ``body`` as JSON to ``url``, everything within ``timeout`` seconds; one retry when no connection could
    be made. :class:`NotifyError` (one line, never the URL) when the webhook did not take it. ``ca``: the bundle
    the server's certificate is verified with (default: certifi's; the environment's is not read)."""
    data = json.dumps(body).encode()
    where = urlsplit(url).hostname or "?"
    verify = str(ca) if ca is not None else True
    with new_session(verify=verify, api="mattermost", max_body=MAX_ANSWER) as session, deadline(timeout):
        for attempt in (1, 2):
            try:
                answer = session.post(url, data=data, timeout=timeout,
                                      headers={"Content-Type": "application/json", "Accept": "*/*"})
                break
            except requests.RequestException as e:
                if attempt == 1 and _not_connected(e):
                    continue
                raise NotifyError(f"{where}: {_reason(e)}" + (" (tried twice)" if attempt == 2 else "")) from None
    if 300 <= answer.status_code < 400:
        raise NotifyError(f"{where}: HTTP {answer.status_code}, a redirect (not followed: check the URL)")
    if not 200 <= answer.status_code < 300:
        raise NotifyError(f"{where}: HTTP {answer.status_code} {excerpt(answer.content, 120)}")


def _one_line(text: str) -> str:
    return escape_controls(" ".join(redact(text).split()))


def notify_summary(summary: Mapping[str, Any], settings: MattermostSettings | None, *,
                   env: Mapping[str, str] | None = None, say: Say | None = None, warn: Say | None = None) -> bool:
    """Tell Mattermost what a whole nightly run (``summary``, JSON form with its trend) changed; True when a
    message went. Never raises: a failure is one redacted ``warn`` line (default: the log)."""
    warn = warn or log.warning
    try:
        if settings is None or not notifiable(summary):
            return False
        text = message(summary, settings.report_url)
        if text is None:
            return False
        send(webhook_url(settings, env), payload(text, settings), settings.timeout_s, settings.ca)
    except NotifyError as e:
        warn(_one_line(f"notify: Mattermost message not sent: {e}"))
        return False
    except Exception as e:  # a bug here must not cost the run its exit status
        warn(_one_line(f"notify: Mattermost message not sent: {type(e).__name__}"))
        return False
    if say is not None:
        say(f"notify: Mattermost message sent: {changes(summary)}")
    return True


# --------------------------------------------------------------------------- the two callers


def _terminal(config: pytest.Config, level: int, **markup: bool) -> Say:
    def write(line: str) -> None:
        reporter = config.pluginmanager.get_plugin("terminalreporter")
        if reporter is None:  # -p no:terminal
            log.log(level, "%s", line)
            return
        reporter.ensure_newline()
        reporter.write_line(line, **markup)

    return write


def after_run(config: pytest.Config, settings: MattermostSettings | None, outputs: Mapping[str, Path]) -> None:
    """At the end of a run, its reports written: notify from the summary just written, trend included (held by
    pytest-html's plugin until its page is written, else read back from ``outputs['summary']``)."""
    if settings is None:
        return
    warn = _terminal(config, logging.WARNING, yellow=True)
    html = config.pluginmanager.get_plugin(HtmlReport.NAME)
    summary = html.summary_data() if isinstance(html, HtmlReport) else None
    if summary is None:
        try:
            summary = load_summary(outputs["summary"])
        except (KeyError, SummaryError) as e:
            warn(_one_line(f"notify: no summary to notify from ({e})"))
            return
    notify_summary(summary, settings, say=_terminal(config, logging.INFO), warn=warn)


def after_merge(summary_path: str | Path, inventory: str | Path | None = None) -> None:
    """After ``alice-acceptance merge`` wrote the merged night's ``summary_path`` (its trend computed): notify it,
    with the inventory given, else ``$ALICE_ACCEPTANCE_INVENTORY``, else the one the shards ran with. Never
    raises: ``reports.merge`` calls it once its reports are written, and its exit status stays its own."""
    def warn(line: str) -> None:
        print(line, file=sys.stderr)

    try:
        summary = load_summary(Path(summary_path))
        path = inventory or os.environ.get("ALICE_ACCEPTANCE_INVENTORY") or str(summary.get("inventory") or "")
        settings = load_inventory(path).notify.mattermost if path else None
    except (SummaryError, InventoryError, OSError) as e:
        warn(_one_line(f"notify: not sent: {e}"))
        return
    notify_summary(summary, settings, say=print, warn=warn)

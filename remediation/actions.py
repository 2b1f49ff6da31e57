"""The runbook's fixes as :class:`~remediation.model.Action` builders. Each reads the node's state first and does
nothing when there is nothing to do (idempotent), bounds every wait, and says what it did.

The fixtures (remediation/fixtures.py) hand them to the engine; the engine also builds the escalation rungs
(``reboot_node``, ``hard_reboot``) from here.

Values from the inventory go to the node shell-quoted (testinfra) and after ``--`` where the command takes it
(systemctl, docker, find); a value the inventory's loader would refuse (an :class:`Expectations` built in a site's
conftest) is refused before anything runs on the node, since ``dsmc`` and testinfra's ``systemctl show`` take no
``--``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, NoReturn

from acceptance.inventory import Expectations, Node, unit_base, valid_backup_path, valid_image, valid_unit_name
from acceptance.parsers import image_repository, unit_state
from remediation.cloud import OpenStack
from remediation.drains import Nomad
from remediation.model import Action, ActionFailed, NeedsHuman, Progress, Refused

WaitNode = Callable[[Node, Progress], str]  # waits for ping and ssh after a reboot; says how long it took
PUPPET_RUNS = 3
_TSM_EXPIRED = ("ANS1025E", "ANS2050E", "ANS1357S", "ANS1353E")  # authentication / registration refused


def _out(result: Any, limit: int = 300) -> str:
    return " ".join(f"{result.stdout}{result.stderr}".split())[-limit:]


# a master's raft services: started only under the lock and with the two other masters healthy
QUORUM_UNITS = ("nomad", "consul")
NEVER_ON_MASTER = ("vault",)  # comes back sealed: unsealing needs the key holders
DRAIN_FIRST_ON_AGENT = ("docker",)  # builds run in it


def restart_unit(node: Node, host: Any, unit: str) -> Action:
    """The unit's fix by its class, decided on its state read now (``resolve``), never restarting a running
    unit: active but disabled -> ``systemctl enable``; inactive -> ``systemctl start``, under the lock and the
    quorum gate for a master's nomad and consul, after a drain for an agent's docker; a master's vault and a
    unit that is not installed go to a human. The chosen action re-reads the state right before acting and
    refuses if the class changed."""
    problem = valid_unit_name(unit)
    if problem is not None:
        return _refused("restart_unit", node, f"unit {problem}: not passed to systemctl")
    base = unit_base(unit)  # 'vault.service' is vault: its class (never on a master, quorum) is the same

    def read() -> Any:
        return unit_state(unit, host.service(unit).systemd_properties)

    def state() -> str:
        return str(read().describe())

    def resolve() -> Action:
        current = read()
        if not current.exists:
            return needs_human("restart_unit", node, f"{unit} is not installed on {node.name}: puppet should "
                                                     "install it (rerun puppet)")
        if current.active and current.enabled:
            return Action("restart_unit", node, f"nothing: {unit} is active and enabled", lambda p: (
                f"{unit} is already active and enabled: nothing to do"), state)
        if current.active:
            return Action("enable_unit", node, f"systemctl enable {unit} on {node.name} (it runs: no restart)",
                          enable, state)
        if node.role == "master" and base in NEVER_ON_MASTER:
            return needs_human("restart_unit", node, f"{unit} is {current.active_state} on {node.name}: it would "
                                                     "come back sealed; start and unseal it by hand")
        if current.active_state not in ("inactive", "failed"):
            return needs_human("restart_unit", node, f"{current.describe()} on {node.name}: neither running nor "
                                                     "stopped, left alone")
        gates: tuple[Any, ...] = ()
        disruptive = False
        if node.role == "master" and base in QUORUM_UNITS:
            gates = ("lock", "quorum")
        elif node.role == "agent" and base in DRAIN_FIRST_ON_AGENT:
            gates, disruptive = ("lock", "workload"), True
        return Action("start_unit", node, f"systemctl start {unit} on {node.name}", start, state,
                      disruptive=disruptive, gates=gates)

    def enable(progress: Progress) -> str:
        current = read()
        if not current.active:
            raise Refused("unit-class", f"{unit} on {node.name} stopped since the check ({current.describe()}): "
                                        "not enabled now, the next run decides again")
        if current.enabled:
            return f"{unit} is already enabled: nothing to do"
        done = host.run("systemctl enable -- %s", unit)
        if done.rc != 0:
            raise ActionFailed(f"systemctl enable {unit}: {_out(done)}")
        return f"systemctl enable {unit} (it was running: not restarted)"

    def start(progress: Progress) -> str:
        current = read()
        if current.active:
            raise Refused("unit-class", f"{unit} on {node.name} runs again ({current.describe()}): not touched")
        if not current.enabled:
            done = host.run("systemctl enable -- %s", unit)
            if done.rc != 0:
                raise ActionFailed(f"systemctl enable {unit}: {_out(done)}")
        done = host.run("systemctl start -- %s", unit)
        if done.rc != 0:
            raise ActionFailed(f"systemctl start {unit} failed: {_out(done)}")
        return f"systemctl start {unit} (it was {current.active_state})"

    return Action("restart_unit", node, f"start or enable {unit} on {node.name}", lambda p: resolve().do(p),
                  state, resolve=resolve)


def restart_backup(node: Node, host: Any, expect: Expectations) -> Action:
    """The runbook's 'Backup master': restart dsmcad, dsmc incremental of the backed-up path, then check that
    the backup store holds every file the master holds."""
    path = expect.backup_path
    problem = valid_unit_name(expect.backup_unit) or valid_backup_path(path)
    if problem is not None:  # dsmc takes no '--': an absolute path is what keeps it a file specification
        return _refused("restart_backup", node, f"backup_unit or backup_path: {problem}: not passed to the node")

    def state() -> str:
        return unit_state(expect.backup_unit, host.service(expect.backup_unit).systemd_properties).describe()

    def do(progress: Progress) -> str:
        restarted = host.run("systemctl restart -- %s", expect.backup_unit)
        if restarted.rc != 0:
            raise ActionFailed(f"systemctl restart {expect.backup_unit}: {_out(restarted)}")
        progress.say(f"dsmc incremental {path} on {node.name}")
        incr = host.run("dsmc incremental %s", path)
        text = f"{incr.stdout}\n{incr.stderr}"
        if any(code in text for code in _TSM_EXPIRED):
            raise NeedsHuman(f"TSM refuses {node.name} ({_out(incr, 160)}): the node's TSM registration has "
                             "expired; renew it with CERN IT (they ask by email), then rerun")
        if incr.rc not in (0, 4, 8):
            raise ActionFailed(f"dsmc incremental {path} failed (return code {incr.rc}): {_out(incr)}")
        missing = _not_in_store(host, path)
        if missing:
            raise ActionFailed(f"after the backup the store still lacks {len(missing)} file(s) of {path}: "
                               f"{', '.join(missing[:5])}")
        return f"dsmcad restarted, dsmc incremental {path} done, the store holds every file of {path}"

    return Action("restart_backup", node, f"restart dsmcad and back {path} up on {node.name}", do, state,
                  settle_s=120)


def _not_in_store(host: Any, path: str) -> list[str]:
    """Files (with their size) under ``path`` on the node that ``dsmc query backup`` does not list."""
    # find reads a starting point that begins with '-' as a predicate even after '--': the path is absolute
    local = host.run("find -- %s -type f -printf '%%s %%p\\n'", path)
    if local.rc != 0:
        raise ActionFailed(f"cannot list {path}: {_out(local)}")
    stored = host.run("dsmc query backup %s -subdir=yes", f"{path.rstrip('/')}/*")
    listed: set[tuple[int, str]] = set()
    for line in stored.stdout.splitlines():
        m = re.match(r"^\s*([\d,]+)\s+B\s+\S+\s+\S+\s+\S+\s+[AI]\s+(/\S.*)$", line)
        if m:
            listed.add((int(m.group(1).replace(",", "")), m.group(2).strip()))
    wanted = set()
    for line in local.stdout.splitlines():
        size, _, name = line.partition(" ")
        if size.isdigit():
            wanted.add((int(size), name))
    return sorted(name for size, name in wanted - listed)


def pull_image(node: Node, host: Any, image: str, timeout_s: int = 900) -> Action:
    problem = valid_image(image)
    if problem is not None:
        return _refused("pull_builder_image", node, f"builder_image {problem}: not passed to docker")
    repo = image_repository(image)

    def present() -> bool:
        listed = host.run("docker images --format %s -- %s", "{{.Repository}}:{{.Tag}}", repo)
        return listed.rc == 0 and any(line.startswith(repo + ":") for line in listed.stdout.splitlines())

    def do(progress: Progress) -> str:
        if present():
            return f"{repo} is already present: nothing to do"
        pulled = host.run("timeout %s docker pull -q -- %s", str(int(timeout_s)), image)
        if pulled.rc != 0:
            raise ActionFailed(f"docker pull {image} failed: {_out(pulled)}")
        return f"docker pull {image}"

    return Action("pull_builder_image", node, f"docker pull {image} on {node.name}", do,
                  lambda: "present" if present() else "absent")


def rerun_puppet(node: Node, host: Any, expect: Expectations, runs: int = PUPPET_RUNS) -> Action:
    """``puppet agent -t -v`` while it reports changes or failures (detailed exit codes 2, 4, 6), at most
    ``runs`` times; failures left after that need a human (the runbook: "report them")."""

    def state() -> str:
        summary = host.file(expect.puppet_summary)
        return "a run summary is there" if summary.exists else "no run summary"

    def do(progress: Progress) -> str:
        codes: list[int] = []
        last = ""
        for i in range(runs):
            progress.say(f"puppet agent -t -v on {node.name} (run {i + 1} of at most {runs})")
            ran = host.run("puppet agent -t -v")
            codes.append(ran.rc)
            last = _out(ran, 240)
            if ran.rc == 0:
                return f"puppet agent -t -v: exit codes {codes}, clean"
            if ran.rc not in (2, 4, 6):
                raise ActionFailed(f"puppet agent -t -v exited {ran.rc}: {last}")
        if codes[-1] == 2:
            return f"puppet agent -t -v: exit codes {codes}, still changing (no failures)"
        raise NeedsHuman(f"puppet still fails after {runs} runs (exit codes {codes}): {last}")

    return Action("rerun_puppet", node, f"rerun puppet on {node.name}", do, state, settle_s=60)


def reboot_for_cmdline(node: Node, host: Any, expect: Expectations, cloud: OpenStack, wait_node: WaitNode) -> Action:
    """Reboot to apply the kernel arguments, once the boot configuration has them (drained first)."""

    def boot_configuration() -> str:
        grubby = host.run("grubby --info=DEFAULT")
        if grubby.rc == 0:
            return str(grubby.stdout)
        grub = host.run("cat /etc/default/grub")
        if grub.rc != 0:
            raise ActionFailed(f"cannot read the boot configuration of {node.name}: {_out(grub)}")
        return str(grub.stdout)

    def state() -> str:
        return " ".join(host.file("/proc/cmdline").content_string.split()[-3:])

    def do(progress: Progress) -> str:
        running = host.file("/proc/cmdline").content_string.split()
        missing = [a for a in expect.kernel_args if a not in running]
        if not missing:
            return "the kernel command line already has the arguments: nothing to do"
        configured = boot_configuration()
        absent = [a for a in missing if a not in configured]
        if absent:
            raise NeedsHuman(f"the boot configuration of {node.name} lacks {' '.join(absent)}: a reboot would "
                             "not apply it; rerun puppet or fix the hostgroup")
        did = cloud.reboot(node, hard=False, progress=progress)
        return f"{did}; {wait_node(node, progress)}"

    return Action("reboot_for_cmdline", node, f"reboot {node.name} to apply {' '.join(expect.kernel_args)}", do,
                  state, disruptive=True, gates=_gates(node), settle_s=120)


def _gates(node: Node) -> tuple[Any, ...]:
    return ("lock", "quorum", "leadership") if node.role == "master" else ("lock", "workload")


def hard_reboot(node: Node, cloud: OpenStack, wait_node: WaitNode,
                confirm: Callable[[], str | None] | None = None) -> Action:
    """The runbook's "Rebooting a Mesos server": hard reboot through OpenStack (only a server that runs or is in
    ERROR: a state a human set is left alone), then wait for ACTIVE, ping and ssh. ``confirm`` asks the node,
    Nomad and OpenStack first."""

    def do(progress: Progress) -> str:
        did = cloud.reboot(node, hard=True, progress=progress)
        return f"{did}; {wait_node(node, progress)}"

    return Action("hard_reboot", node, f"hard reboot {node.name} through OpenStack", do,
                  lambda: f"OpenStack: {str(cloud.status(node))}", disruptive=True, gates=_gates(node), settle_s=120,
                  confirm=confirm)


def reboot_node(node: Node, cloud: OpenStack, wait_node: WaitNode,
                confirm: Callable[[], str | None] | None = None) -> Action:
    def do(progress: Progress) -> str:
        did = cloud.reboot(node, hard=False, progress=progress)
        return f"{did}; {wait_node(node, progress)}"

    return Action("reboot_node", node, f"reboot {node.name} through OpenStack", do,
                  lambda: f"OpenStack: {str(cloud.status(node))}", disruptive=True, gates=_gates(node), settle_s=120,
                  confirm=confirm)


def reenable_node(node: Node, nomad: Nomad) -> Action:
    """Make an agent eligible again in Nomad: only a drain this suite made and that is complete, and only once
    every check of the node itself passed in this run (the ``node-healthy`` gate); a human's drain or
    ineligibility is never undone."""

    def state() -> str:
        n = nomad.node(node.name)
        return f"{n.get('Status')}, drain {bool(n.get('DrainStrategy'))}, {n.get('SchedulingEligibility')}"

    def do(progress: Progress) -> str:
        n = nomad.node(node.name)
        if n.get("Status") != "ready":
            raise ActionFailed(f"Nomad node {node.name} is {n.get('Status')}: its client is not running "
                               "(see the node's units), eligibility is not the problem")
        if n.get("SchedulingEligibility") == "eligible" and not n.get("DrainStrategy"):
            return f"{node.name} is already eligible: nothing to do"
        return nomad.reenable(str(n["ID"]), n)

    def ours() -> str | None:  # asked before anything starts: a human's drain or ineligibility is theirs
        n = nomad.node(node.name)
        if n.get("SchedulingEligibility") == "eligible" and not n.get("DrainStrategy"):
            return None
        return None if Nomad.drained_by_us(n) else f"{node.name} was drained or made ineligible by {Nomad.who(n)}"

    return Action("reenable_node", node, f"re-enable {node.name} in Nomad", do, state, gates=("node-healthy",),
                  confirm=ours)


def _refused(name: str, node: Node, why: str) -> Action:
    """An action that refuses (guardrail ``node-value``) without running anything on the node: when the engine
    resolves it (a dry run too, so it is never 'planned') or when it is run directly; its state is not read."""

    def refuse(*_: object) -> NoReturn:
        raise Refused("node-value", why)

    return Action(name, node, f"refuse: {why}", refuse, resolve=refuse)


def needs_human(name: str, node: Node, why: str) -> Action:
    def do(progress: Progress) -> str:
        raise NeedsHuman(why)

    return Action(name, node, why, do)

"""The command line as operators meet it: one exit-status table over every entry point (``alice-acceptance``,
``python -m remediation.lock``, ``python -m remediation.switch``), a usage error of any kind (argparse's own
included) exit 4 with one line ``<prog>: <problem>; fix: <what to do>``, ``--version``, and help that says what each
command is for, with examples and the pytest options it passes on.

In-process where nothing but argument handling runs; through the real console script (a subprocess) for the
process's exit status and for pytest's own usage error (a bad --inventory: pytest.main is not nested here).
"""

from __future__ import annotations

import importlib.metadata
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from alice_acceptance import cli
from alice_acceptance.help import COMMANDS, DISTRIBUTION
from remediation import lock, switch
from reports import merge
from reports.trend import DEFAULT_RUNS

MISSING = "/nonexistent/inventory.yaml"  # never read: the inventory loader refuses it first
PROG = "alice-acceptance"
LOCK = "python -m remediation.lock"
SWITCH = "python -m remediation.switch"
MAINS: dict[str, Callable[[list[str]], int]] = {PROG: cli.main, LOCK: lock.main, SWITCH: switch.main}


def run(entry: str, argv: Sequence[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """(exit status, stdout, stderr) of an entry point's main, whether it returns the status or exits with it."""
    try:
        code: int | str | None = MAINS[entry](list(argv))
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    assert isinstance(code, int), (entry, argv, code)
    return code, out, err


def one_line(err: str) -> str:
    lines = err.splitlines()
    assert len(lines) == 1, err
    return lines[0]


# (entry point, argv, how the one line starts); every one of them exit 4
USAGE_ERRORS = [
    (PROG, [], f"{PROG}: the following arguments are required: COMMAND; fix: e.g. {PROG} check "),
    (PROG, ["frobnicate"], f"{PROG}: argument COMMAND: invalid choice: 'frobnicate'"),
    (PROG, ["--bogus"], f"{PROG}: the following arguments are required: COMMAND"),
    (PROG, ["check", "--remediate=yes"], f"{PROG} check: argument --remediate: invalid choice: 'yes'"),
    (PROG, ["check"], f"{PROG} check: no inventory; fix: pass --inventory FILE"),
    (PROG, ["nightly", "--shard"], f"{PROG} nightly: argument --shard: expected one argument"),
    (PROG, ["provision"], f"{PROG} provision: the following arguments are required: NODE; fix: e.g. {PROG} "
                          "provision alibuild07"),
    (PROG, ["provision", "x", "--timeout=abc"], f"{PROG} provision: argument --timeout: invalid float value: 'abc'"),
    (PROG, ["gate"], f"{PROG} gate: the following arguments are required: ACTION:NODE; fix: e.g. {PROG} gate "),
    (PROG, ["lock"], f"{PROG} lock: the following arguments are required: action; fix: e.g. {PROG} lock status"),
    (PROG, ["lock", "frobnicate"], f"{PROG} lock: argument action: invalid choice: 'frobnicate'"),
    (PROG, ["lock", "status", "--bogus", "--inventory=x.yaml"], f"{PROG} lock: unknown --bogus; fix: see "),
    (PROG, ["lock", "status", f"--inventory={MISSING}"], f"{MISSING}: "),
    (PROG, ["stop"], f"{PROG} stop: the following arguments are required: --reason; fix: e.g. {PROG} stop --reason"),
    (PROG, ["stop", "--reason", " \t"], f"{PROG} stop: --reason is blank; fix: say who stops it"),
    (PROG, ["stop", "--reason", "x"], f"{PROG} stop: no inventory"),
    (PROG, ["stop", "--reason", "x", f"--inventory={MISSING}"], f"{MISSING}: "),
    (PROG, ["resume", "--bogus"], f"{PROG} resume: unknown --bogus"),
    (PROG, ["release", f"--inventory={MISSING}"], f"{MISSING}: "),
    (PROG, ["merge"], f"{PROG} merge: "),  # merge's own parser from here: its errors are 4 and one line too
    (PROG, ["merge", "out", "x.json", "--bogus"], f"{PROG} merge: unrecognized arguments: --bogus"),
    (PROG, ["merge", "out", "x.json", "--runs=0"], f"{PROG} merge: --runs 0: expected 1 to 1000"),
    (PROG, ["merge", "out", "missing.json"], f"{PROG} merge: missing.json: "),
    (PROG, ["--bogus", "merge", "out", "x.json"], f"{PROG}: unknown --bogus; fix: see {PROG} --help"),
    (LOCK, [], f"{LOCK}: the following arguments are required: command, --inventory"),
    (LOCK, ["frobnicate", "--inventory=x.yaml"], f"{LOCK}: argument command: invalid choice: 'frobnicate'"),
    (LOCK, ["status"], f"{LOCK}: the following arguments are required: --inventory; fix: see {LOCK} --help"),
    (LOCK, ["status", f"--inventory={MISSING}"], f"{MISSING}: "),
    (SWITCH, ["pause", "--inventory=x.yaml"], f"{SWITCH}: argument command: invalid choice: 'pause'"),
    (SWITCH, ["stop", "--inventory=x.yaml"], f"{SWITCH}: stop: no reason; fix: pass --reason TEXT"),
    (SWITCH, ["resume"], f"{SWITCH}: the following arguments are required: --inventory"),
    (SWITCH, ["resume", f"--inventory={MISSING}"], f"{MISSING}: "),
]


@pytest.mark.parametrize(("entry", "argv", "starts"), USAGE_ERRORS, ids=[" ".join([e, *a]) for e, a, _ in USAGE_ERRORS])
def test_every_usage_error_is_4_and_one_line_with_the_fix(entry: str, argv: list[str], starts: str,
                                                          capsys: pytest.CaptureFixture[str],
                                                          monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("ALICE_ACCEPTANCE_INVENTORY", raising=False)
    monkeypatch.chdir(tmp_path)  # merge's OUT: refused before anything is written, and then here
    code, out, err = run(entry, argv, capsys)
    line = one_line(err)
    assert code == 4 and line.startswith(starts) and "; fix: " in line, (code, err)
    assert not out and not list(tmp_path.iterdir())


@pytest.mark.parametrize("argv", [["--version"], ["-V"]])
def test_version(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(PROG, argv, capsys)
    assert (code, out, err) == (0, f"{PROG} {importlib.metadata.version(DISTRIBUTION)}\n", "")


def test_the_distribution_is_the_projects() -> None:
    pyproject = (Path(__file__).resolve().parents[2] / "pyproject.toml").read_text()
    assert f'\n[project]\nname = "{DISTRIBUTION}"\n' in pyproject


def test_top_level_help_lists_each_command_once(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(PROG, ["--help"], capsys)
    assert code == 0 and not err
    for command in COMMANDS:  # an entry: indented, the name, two spaces or more, what it is
        entries = re.findall(rf"^ +{command.name} {{2,}}\S", out, flags=re.MULTILINE)
        assert len(entries) == 1, (command.name, out)
    assert "exit status:" in out and "4  bad input" in out and "6  a remediation needs a human" in out


# the pytest options each pytest-running command must say it honours
PASSED_ON = {
    "check": ("--nodes", "--role", "-m critical", "-k", "--checks-dir", "--no-discovery", "--run-timeout", "-n N"),
    "nightly": ("--nodes", "--role", "-m critical", "--checks-dir", "--no-discovery", "--run-timeout", "-n N"),
    "provision": ("-m critical", "--checks-dir", "--no-discovery", "--run-timeout"),
    "gate": ("--checks-dir", "--no-discovery", "--run-timeout"),
    "merge": (f"default {DEFAULT_RUNS}",),  # its options: test_merge_help_names_merges_options
}


@pytest.mark.parametrize("command", [c.name for c in COMMANDS])
def test_each_command_help_says_what_it_is_for(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(PROG, [command, "--help"], capsys)
    assert code == 0 and not err
    spec = next(c for c in COMMANDS if c.name == command)
    assert " ".join(spec.description.split()) in " ".join(out.split())
    examples = [line.strip() for line in out.split("\nexamples:\n", 1)[1].split("\n\n", 1)[0].splitlines()]
    assert len(examples) >= 2 and all(e.startswith(f"{PROG} {command} ") for e in examples), examples
    assert "exit status:" in out
    for option in PASSED_ON.get(command, ()):
        assert option in out, (command, option)


def test_the_options_passed_on_are_pytests(pytestconfig: pytest.Config) -> None:
    """Each long option a help lists as passed on to pytest is one (this process's pytest has the plugin)."""
    for command in COMMANDS:
        if command.name == "merge":
            continue
        for option, _ in command.passed_on:
            if option.startswith("--"):
                pytestconfig.getoption(option.split()[0][2:].replace("-", "_"))  # ValueError when unknown


def test_merge_help_names_merges_options(capsys: pytest.CaptureFixture[str]) -> None:
    """reports/merge.py reads merge's arguments: its help and the CLI's name the same options."""
    code, cli_help, _ = run(PROG, ["merge", "--help"], capsys)
    assert code == 0
    with pytest.raises(SystemExit, match="^0$"):
        merge.main(["--help"])
    merge_help = capsys.readouterr().out
    options = re.compile(r"--[a-z][a-z-]+")
    assert set(options.findall(cli_help)) - {"--shard"} == set(options.findall(merge_help))


def test_merge_gets_its_arguments_as_given(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[list[str]] = []
    monkeypatch.setattr(merge, "main", lambda argv, notify=None: seen.append(argv) or 0)
    argv = ["--report-dir", "out", "s1.json", "--runs", "3", "s2.json", "--keep=5"]
    assert cli.main(["merge", *argv]) == 0 and seen == [argv]


def test_unknown_options_still_go_to_pytest() -> None:
    args, extra = cli.parser().parse_known_args(["check", "--inventory=i.yaml", "-m", "critical", "--nodes=alib*",
                                                 "-k", "dsmc", "--checks-dir=site"])
    assert extra == ["-m", "critical", "--nodes=alib*", "-k", "dsmc", "--checks-dir=site"]
    assert cli.pytest_args(args, extra)[-6:] == extra
    args, extra = cli.parser().parse_known_args(["provision", "alibuild07", "--inventory=i.yaml", "-m", "critical"])
    assert args.nodes == ["alibuild07"] and extra == ["-m", "critical"]


@pytest.mark.parametrize(("raised", "code"), [(RuntimeError("a bug"), 3), (KeyboardInterrupt(), 2)])
def test_a_bug_is_3_and_ctrl_c_2(raised: BaseException, code: int, capsys: pytest.CaptureFixture[str],
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    def fails(argv: list[str]) -> int:
        raise raised

    monkeypatch.setattr(lock, "main", fails)
    got, _, err = run(PROG, ["lock", "status", "--inventory=x.yaml"], capsys)
    assert got == code
    if code == 3:  # the traceback for the bug report, then one line
        assert "RuntimeError: a bug" in err and err.splitlines()[-1].startswith(f"{PROG} lock: internal error")


def console_script() -> str:
    found = shutil.which(PROG, path=str(Path(sys.executable).parent))
    assert found, f"{PROG} is not installed beside {sys.executable} (pip install -e .)"
    return found


# through the real process: its exit status, argparse's error, pytest's own usage error (4, its one line)
PROCESSES = [
    ([console_script, "provision"], 4, f"{PROG} provision: the following arguments are required: NODE; fix: "),
    ([console_script, "check", f"--inventory={MISSING}", "-p", "no:cacheprovider"], 4, f"ERROR: {MISSING}: "),
    ([lambda: sys.executable, "-m", "remediation.switch", "stop", "--inventory=x.yaml"], 4, f"{SWITCH}: stop: "),
    ([console_script, "--version"], 0, ""),
]


@pytest.mark.parametrize(("argv", "code", "starts"), PROCESSES, ids=["provision", "bad-inventory", "switch", "version"])
def test_the_process_exit_status(argv: list[str | Callable[[], str]], code: int, starts: str, tmp_path: Path) -> None:
    command = [a() if callable(a) else a for a in argv]
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False,
                          env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert done.returncode == code, (done.returncode, done.stdout[-2000:], done.stderr[-2000:])
    if code:
        line = one_line(done.stderr.rstrip("\n"))  # pytest ends its ERROR line with a blank one
        assert line.startswith(starts) and "; fix: " in line, done.stderr
    else:
        assert done.stdout.startswith(f"{PROG} ") and not done.stderr

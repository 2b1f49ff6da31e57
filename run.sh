#!/usr/bin/env bash
# Set-up on a fresh machine, then one job:
#   bash run.sh main    the suite against the local lab, reports in reports/out/latest/
#   bash run.sh tests   the project's own tests (unit, emulators, lab faults)
# Installs what is missing (Debian packages, the venv), starts dockerd, brings the lab up (idempotent)
# and leaves it up; `.venv/bin/python -m tests.lab down` removes it.
set -euo pipefail
cd "$(dirname "$0")"
job=${1:-main}

need=()
command -v dockerd >/dev/null || need+=(docker.io)
command -v debootstrap >/dev/null || need+=(debootstrap)
[ -x /bin/busybox ] || need+=(busybox-static)
command -v ssh >/dev/null || need+=(openssh-client)
command -v ping >/dev/null || need+=(iputils-ping)
command -v chromedriver >/dev/null || need+=(chromium chromium-driver)  # the HTML report's browser test
if ((${#need[@]})); then
  echo "run.sh: installing ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
if [ ! -x .venv/bin/pytest ] || [ pyproject.toml -nt .venv/.installed ]; then
  python3 -m venv .venv
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q -e '.[dev]'
  touch .venv/.installed
fi
.venv/bin/python -m tests.lab up ${LAB_AGENTS:+--agents "$LAB_AGENTS"}

case "$job" in
  main)
    # The nightly moment exactly as against production: inventory, ssh config and the CLIs' variables; the
    # reports (HTML, JUnit, JSON, metrics, trend) in reports/out/latest/. Exit 1 when a check fails.
    set -a; . .lab/env; set +a
    exec .venv/bin/alice-acceptance nightly --inventory .lab/inventory.yaml
    ;;
  tests)
    rc=0
    .venv/bin/pytest tests -q --durations=25 || rc=$?  # the slowest tests named: where CI time goes
    # the speed benchmark at the lab's size: prints its figures (nothing in it asserts a time)
    .venv/bin/python -m tests.bench.speed --runs 3 || rc=$((rc ? rc : 1))
    exit "$rc"
    ;;
  *)
    echo "usage: bash run.sh main|tests" >&2
    exit 2
    ;;
esac

#!/usr/bin/env bash
# The whole test suite: sets up what it needs, lints, then runs pytest (installer unit
# tests, the offline bundle's build, and every molecule scenario). Extra arguments go to pytest:
#   tests/run.sh                         everything
#   tests/run.sh tests/unit              only the installer's unit tests
#   tests/run.sh -k firewall             one molecule scenario
# Scenarios run four at a time (TEST_WORKERS to change). On the 2-core CI machine a
# whole-stack scenario takes two to three times as long beside three others as alone (e2e,
# 2026-12-02: 34 min beside one or two, 78 min beside three), and CI's whole run is bounded
# by the CPU work of all of them together (tests/molecule/test_scenarios.py, MINUTES).
# PLATFORM_TEST_SLOW=1 adds the scenarios and tests too slow for CI (README, "Tests").
set -euo pipefail
cd "$(dirname "$0")/.."
. tests/lib.sh

ensure_venv requirements-dev.txt
ensure_docker_engine
ensure_package debootstrap debootstrap
step "building the systemd test images" bash tests/images/build.sh

step "yamllint" .venv/bin/yamllint --strict .
step "ansible-lint (production profile)" .venv/bin/ansible-lint --offline
step "ruff" .venv/bin/ruff check .

# Each scenario's steps with their times, shown as they end (pytest shows a scenario's
# output only once it has passed or failed).
export PLATFORM_TEST_PROGRESS="${PLATFORM_TEST_PROGRESS:-$(mktemp -t platform-test-progress.XXXXXX)}"
tail -n 0 -F --pid=$$ "$PLATFORM_TEST_PROGRESS" 2>/dev/null | sed -u 's/^/  [scenario] /' &

# One test at a time per worker, longest scenarios first (tests/molecule/test_scenarios.py):
# the scenarios ahead of the rest, so that each worker starts with one of them.
(($#)) || set -- tests/molecule tests/integration tests/unit
step "pytest" .venv/bin/pytest -n "${TEST_WORKERS:-4}" --dist load --maxschedchunk 1 --durations 20 "$@"

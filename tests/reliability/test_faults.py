"""The fault experiments of bench/faults at suite size: each runs `python -m bench.faults SCENARIO` (its
own simulated fleet, PostgreSQL database, redis-server, worker hosts under fleet.supervise and beat),
which injects the fault mid-rollout and checks from outside (plain git, the kubernetes client) that every
site ended as the rollout reports, with one commit at most, none after a halt, no false success, within
the stated bound. The test passes when the experiment's verdict does; its table is printed either way.

They run with `pytest -m long tests/reliability` (docs/RELIABILITY.md), outside `make test`; the
documented sizes (300 and 3000 sites, the issue's fault durations) with `python -m bench.faults`.
"""

import os
import subprocess
import sys
from urllib.parse import urlsplit

import pytest
from django.conf import settings

from tests.support.services import ROOT

pytestmark = pytest.mark.integration

SITES = 30
# (scenario, fault-duration scale): the suite-sized runs shorten the outages (60 s of Redis -> 15 s ...).
# All run under -m long, keeping `make test` well within its 15 minutes. The suite keeps smaller tests of
# the same faults: Redis SIGKILLed twice mid-wave with nothing restarted (tests/rollouts/test_broker_loss.py),
# the push race and two writers (tests/sites/test_repos_writers.py, tests/rollouts/test_site_steps.py), a
# worker SIGKILLed mid-wave (tests/rollouts/test_workflow.py), unreachable and failing sites
# (tests/rollouts/test_gate.py, test_unreachable.py); the database's faults only here.
LONG = [
    ("redis", 0.25),
    ("postgres", 1.0),
    ("push-race", 1.0),
    ("hosts", 1.0),
    ("edge", 0.5),
    ("git-host", 0.25),
    ("worker-kills", 0.5),
    ("disk-full", 0.25),
    ("clock-skew", 1.0),
]


def experiment_database() -> str:
    """A database of the experiments' own beside the test database (dropped and created by each run)."""
    db = settings.DATABASES["default"]
    if not db["ENGINE"].endswith("postgresql"):
        pytest.skip("the fault experiments run on PostgreSQL")
    url = os.environ.get("FLEET_DATABASE_URL", "")
    parts = urlsplit(url)
    return parts._replace(path=f"/{db['NAME']}_faults").geturl()


def run_experiment(scenario: str, scale: float) -> None:
    command = [sys.executable, "-m", "bench.faults", scenario, "--sites", str(SITES), "--scale", str(scale),
               "--database", experiment_database()]  # fmt: skip
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=840, check=False)
    print(done.stdout[-6000:])
    tail = f"{done.stdout[-6000:]}\n{done.stderr[-3000:]}"
    assert done.returncode == 0, f"{scenario}: the experiment's verdict is FAIL\n{tail}"
    assert f"VERDICT {scenario}: PASS" in done.stdout


@pytest.mark.long
@pytest.mark.timeout(900)
@pytest.mark.parametrize(("scenario", "scale"), LONG, ids=[name for name, _ in LONG])
def test_long_fault_experiment(scenario: str, scale: float) -> None:
    run_experiment(scenario, scale)

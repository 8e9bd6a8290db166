"""make dev's commands: `fleet_import --probe` probes what it imported at once, and `dev_faults` makes one
site offline and one failing in a running simulator."""

from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command

from fleet.audit.models import AuditEvent
from simulator.testing import running_simulator
from sites.models import Site


@pytest.mark.integration
@pytest.mark.django_db
def test_fleet_import_with_probe_queues_a_probe_of_every_site_it_imported(tmp_path: Path) -> None:
    with running_simulator(sites=2, state_dir=tmp_path / "sim") as sim:
        call_command("fleet_import", str(sim.state_dir / "fleet.json"), "--probe")

    imported = set(Site.objects.values_list("pk", flat=True))
    probed = set(AuditEvent.objects.filter(verb="probe").values_list("object_id", flat=True))
    assert len(imported) == 2 and probed == {str(pk) for pk in imported}


@pytest.mark.integration
@pytest.mark.django_db
def test_dev_faults_takes_the_last_site_offline_and_makes_the_one_before_fail(tmp_path: Path, capsys: Any) -> None:
    with running_simulator(sites=3, state_dir=tmp_path / "sim") as sim:
        call_command("fleet_import", str(sim.state_dir / "fleet.json"))
        codes = sorted(sim.codes)

        call_command("dev_faults", str(sim.state_dir), "--wait", "0")
        faults = {(f["site"], f["kind"]) for f in sim.faults()}
        sim.clear_faults()
        call_command("dev_faults", str(sim.state_dir), "--wait", "0", "--failing", "")
        only_offline = {(f["site"], f["kind"]) for f in sim.faults()}

    assert faults == {(codes[-1], "offline"), (codes[-2], "sync_failure")}
    assert only_offline == {(codes[-1], "offline")}
    assert f"dev fault: {codes[-1]} offline" in capsys.readouterr().out

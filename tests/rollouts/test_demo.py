"""`manage.py demo_rollout`: creates the sample application once and starts one rollout at a time."""

from io import StringIO

import pytest
from django.core.management import call_command

from fleet.workflows.models import WorkflowRun
from rollouts import services
from rollouts.choices import DRIVE_KIND
from rollouts.models import Application, Release, Rollout
from tests.factories import SiteFactory

pytestmark = pytest.mark.django_db


def run_command() -> str:
    out = StringIO()
    call_command("demo_rollout", "--bake", "0", stdout=out)
    return out.getvalue()


def test_demo_rollout_starts_a_three_wave_rollout_of_pos_bridge_and_is_idempotent() -> None:
    SiteFactory.create_batch(30)

    first = run_command()
    again = run_command()

    rollout = Rollout.objects.get()
    assert "started" in first and "already going" in again
    assert rollout.release.application.name == "pos-bridge"
    assert [(w.name, w.size) for w in rollout.waves.order_by("index")] == [
        ("canary", 1),
        ("early", 2),
        ("everyone", 27),
    ]
    assert WorkflowRun.objects.filter(kind=DRIVE_KIND, subject_id=str(rollout.pk)).count() == 1
    assert Application.objects.count() == 1

    # Once it has finished, the next run rolls out a new patch version (the used one is immutable).
    services.rollout_cancel(rollout=rollout, actor="test", source="test")
    run_command()
    assert list(Release.objects.order_by("id").values_list("version", flat=True)) == ["1.0.0", "1.0.1"]
    assert Rollout.objects.count() == 2

"""The doors of the site workflows (API, admin, service): who may onboard and decommission, what is refused
(409 naming the running workflow or the state), the first bootstrap token shown once and never replayed;
and `site.decommission` carried out against local repositories (real git on disk)."""

import subprocess
from pathlib import Path
from typing import Any

import pytest

from fleet.audit.models import AuditEvent
from fleet.workflows import engine
from fleet.workflows.choices import TERMINAL_STATES, RunState
from fleet.workflows.models import WorkflowRun
from sites import devices, registration, services, site_lifecycle
from sites.base_stack import BaseStack, BaseStackUnavailable, base_stack_for, register_base_stack
from sites.choices import SiteState
from sites.githost import _git_host
from sites.models import BootstrapToken, NodeCredential, Site
from tests.factories import NodeFactory, SiteFactory, UserFactory, admin_for, api_for

pytestmark = pytest.mark.django_db

VIEWER = ["sites.view_site"]
ONBOARDER = [*VIEWER, "sites.onboard_site"]
CLOSER = [*VIEWER, "sites.decommission_site"]


# --- onboarding's door ---------------------------------------------------------------------------------


def test_onboarding_needs_its_permission(quiet: None) -> None:
    site = SiteFactory(state=SiteState.PLANNED)
    url = f"/api/v1/sites/{site.code}/onboard/"

    assert api_for([*VIEWER, "sites.change_site", "sites.add_bootstraptoken"]).post(url, {}).status_code == 403
    staff = admin_for([*VIEWER, "sites.change_site"], "staff")
    assert staff.post(f"/admin/sites/site/{site.pk}/onboard/").status_code == 403
    page = staff.get(f"/admin/sites/site/{site.pk}/change/")
    assert "Onboard…" not in page.content.decode()

    assert not WorkflowRun.objects.exists() and not BootstrapToken.objects.exists()


def test_onboarding_answers_202_with_the_run_and_the_first_boot_token_once(quiet: None) -> None:
    # Given a planned site with two machines pre-registered (one already retired)
    site = SiteFactory(state=SiteState.PLANNED)
    box = NodeFactory(site=site, state="preregistered", serial="G6FIRST00001")
    NodeFactory(site=site, state="retired", serial="G6GONE000001")
    client = api_for(ONBOARDER, "onboarder")

    # When support onboards it, with an Idempotency-Key
    answer = client.post(f"/api/v1/sites/{site.code}/onboard/", {}, format="json", HTTP_IDEMPOTENCY_KEY="k-1")

    # Then 202 with the run, and the bootstrap token for the waiting machine, bound to its serial
    assert answer.status_code == 202, answer.content
    body = answer.json()
    assert (body["kind"], body["subject"], body["state"]) == ("site.onboard", site.code, "pending")
    first_boot = body["first_boot"]
    assert first_boot["serials"] == [box.serial] and first_boot["token"].startswith("efb_")
    assert body["context"]["first_boot"]["prefix"] == first_boot["prefix"]  # the run keeps the prefix only
    assert first_boot["token"] not in str(WorkflowRun.objects.get(pk=body["id"]).context)
    event = AuditEvent.objects.get(verb="onboard_request")
    assert (event.actor_repr, event.payload) == ("onboarder", {"run": body["id"], "first_boot": first_boot["prefix"]})

    # And a retry with the same key gets no token again (the answer held a secret shown once)
    replay = client.post(f"/api/v1/sites/{site.code}/onboard/", {}, format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    assert replay.status_code == 409 and first_boot["token"] not in replay.content.decode()
    assert WorkflowRun.objects.count() == 1

    # The token registers that machine
    services.cluster_set_join_config(
        cluster=site.cluster, actor="test", source="test", server_url="https://10.0.0.1:6443", token="k3s-join"
    )
    registration.device_register(serial=box.serial, mac=box.mac, bootstrap_token=first_boot["token"], facts={})
    assert BootstrapToken.objects.get(prefix=first_boot["prefix"]).used_at is not None


def test_a_site_with_no_machine_waiting_gets_no_token(quiet: None) -> None:
    site = SiteFactory(state=SiteState.ACTIVE)
    NodeFactory(site=site, state="active")

    answer = api_for(ONBOARDER).post(f"/api/v1/sites/{site.code}/onboard/", {}, format="json")

    assert answer.status_code == 202 and "first_boot" not in answer.json()
    assert not BootstrapToken.objects.exists()


def test_onboarding_refuses_while_a_site_workflow_runs_and_for_a_decommissioned_site(quiet: None) -> None:
    site = SiteFactory(state=SiteState.PLANNED)
    client = api_for([*ONBOARDER, "sites.decommission_site"])
    first = client.post(f"/api/v1/sites/{site.code}/onboard/", {}, format="json").json()

    second = client.post(f"/api/v1/sites/{site.code}/onboard/", {}, format="json")
    closing = client.post(f"/api/v1/sites/{site.code}/decommission/", {"reason": "x", "confirm": site.code})

    for refused in (second, closing):
        assert refused.status_code == 409
        assert f"site.onboard run {first['id']} is pending" in refused.json()["detail"]
    assert Site.objects.get(pk=site.pk).state == SiteState.PLANNED  # the decommission wrote nothing

    closed = SiteFactory(state=SiteState.DECOMMISSIONED)
    gone = client.post(f"/api/v1/sites/{closed.code}/onboard/", {}, format="json")
    assert gone.status_code == 409 and "decommissioned" in gone.json()["detail"]
    assert WorkflowRun.objects.count() == 1


def test_production_does_not_onboard_onto_local_repositories(quiet: None, settings: Any) -> None:
    settings.PRODUCTION = True
    site = SiteFactory(state=SiteState.PLANNED)

    refused = api_for(ONBOARDER).post(f"/api/v1/sites/{site.code}/onboard/", {}, format="json")

    assert refused.status_code == 409 and "FLEET_GIT_HOST=gitlab" in refused.json()["detail"]
    assert not WorkflowRun.objects.exists()


def test_the_site_page_onboards_and_shows_the_token_once(quiet: None) -> None:
    site = SiteFactory(state=SiteState.PLANNED)
    NodeFactory(site=site, state="preregistered", serial="G6ADMIN00001")
    client = admin_for([*ONBOARDER, "sites.change_site"])

    page = client.get(f"/admin/sites/site/{site.pk}/change/")
    assert page.status_code == 200 and f"/admin/sites/site/{site.pk}/onboard/" in page.content.decode()
    confirm = client.get(f"/admin/sites/site/{site.pk}/onboard/")
    assert confirm.status_code == 200 and "G6ADMIN00001" in confirm.content.decode()

    done = client.post(f"/admin/sites/site/{site.pk}/onboard/", follow=True)

    run = WorkflowRun.objects.get(kind="site.onboard")
    shown = done.content.decode()
    assert f"run {run.pk}" in shown and "bootstrap token efb_" in shown and "not shown again" in shown
    again = client.get(f"/admin/sites/site/{site.pk}/change/").content.decode()
    assert "efb_" not in again and f"site.onboard run {run.pk}" in again


# --- decommissioning's door ------------------------------------------------------------------------------


def test_the_site_page_decommissions_with_a_reason_and_the_code(quiet: None) -> None:
    site = SiteFactory(state=SiteState.ACTIVE)
    clerk = admin_for([*VIEWER, "sites.change_site"])
    assert clerk.get(f"/admin/sites/site/{site.pk}/decommission/").status_code == 403
    closer = admin_for([*CLOSER, "sites.change_site"], "closer")
    assert "Decommission…" in closer.get(f"/admin/sites/site/{site.pk}/change/").content.decode()

    wrong = closer.post(f"/admin/sites/site/{site.pk}/decommission/", {"reason": "closed", "confirm": "TX-0000"})
    assert wrong.status_code == 200 and "to confirm" in wrong.content.decode()
    assert Site.objects.get(pk=site.pk).state == SiteState.ACTIVE

    done = closer.post(f"/admin/sites/site/{site.pk}/decommission/", {"reason": "closed", "confirm": site.code})

    assert done.status_code == 302
    assert Site.objects.get(pk=site.pk).state == SiteState.DECOMMISSIONED
    run = WorkflowRun.objects.get(kind="site.decommission")
    assert run.context["reason"] == "closed" and run.created_by_repr == "closer"


def test_a_site_whose_onboarding_stalled_can_be_decommissioned(quiet: None) -> None:
    site = SiteFactory(state=SiteState.PROVISIONING)

    run = site_lifecycle.site_decommission_request(
        site=site, actor="test", source="test", reason="never opened", confirm=site.code
    )

    assert run.kind == "site.decommission" and Site.objects.get(pk=site.pk).state == SiteState.DECOMMISSIONED


# --- site.decommission against local repositories --------------------------------------------------------


def advance(run: WorkflowRun) -> WorkflowRun:
    for _ in range(50):
        run.refresh_from_db()
        if run.state in TERMINAL_STATES:
            return run
        owner = run.lease_owner if run.lease_owner.startswith("handoff/") else None
        engine.advance(run.pk, worker_id="test", lease_token=owner)
    return run


def test_decommission_revokes_the_machines_and_archives_the_repository(
    quiet: None, settings: Any, tmp_path: Path
) -> None:
    # Given an onboarded site on the local git host: a repository with a commit, a machine with a
    # credential, an unused bootstrap token
    settings.REPO_ROOT = tmp_path / "repos"
    _git_host.cache_clear()
    site = SiteFactory(state=SiteState.ACTIVE)
    repo = settings.REPO_ROOT / f"{site.code}.git"
    from sites.githost import git_host

    git_host().ensure_project(site.code)
    work = tmp_path / "work"
    subprocess.run(["git", "clone", "-q", str(repo), str(work)], check=True, capture_output=True)
    (work / "a.yaml").write_text("a: b\n")
    for args in (["add", "a.yaml"], ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "a"]):
        subprocess.run(["git", *args], cwd=work, check=True, capture_output=True)
    subprocess.run(["git", "push", "-q", "origin", "HEAD:main"], cwd=work, check=True, capture_output=True)
    node = NodeFactory(site=site, state="active")
    devices.node_credentials_issue(node=node, actor="test", source="test")
    waiting = NodeFactory(site=site, state="preregistered")
    devices.bootstrap_token_issue(site=site, actor="test", source="test", serials=[str(waiting.serial)])

    # When it is decommissioned and its run carried out
    run = site_lifecycle.site_decommission_request(
        site=site, actor=UserFactory(username="closer", perms=CLOSER), source="test", reason="closed", confirm=site.code
    )
    run = advance(run)

    # Then: credentials and tokens revoked, the repository archived (kept, refusing pushes), all audited
    assert run.state == RunState.SUCCEEDED, run.error
    assert not NodeCredential.objects.filter(node__site=site, revoked_at__isnull=True).exists()
    assert not BootstrapToken.objects.filter(site=site, revoked_at__isnull=True).exists()
    assert run.context["archived"] is True and (repo / "HEAD").is_file()
    (work / "b.yaml").write_text("b: c\n")
    subprocess.run(["git", "add", "b.yaml"], cwd=work, check=True)
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "b"], cwd=work, check=True)
    pushed = subprocess.run(["git", "push", "-q", "origin", "HEAD:main"], cwd=work, capture_output=True, text=True)
    assert pushed.returncode != 0 and "archived" in pushed.stderr
    verbs = list(
        AuditEvent.objects.filter(object_type="sites.site", object_id=str(site.pk)).values_list("verb", flat=True)
    )
    assert {"decommission_request", "transition", "revoke_bootstrap_token", "archive_project"} <= set(verbs)
    _git_host.cache_clear()


# --- the base stack's provider -------------------------------------------------------------------------------


def test_a_base_stack_outside_its_folder_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    from sites import base_stack

    site = SiteFactory()
    monkeypatch.setattr(base_stack, "_provider", None)
    with pytest.raises(BaseStackUnavailable, match="no base stack provider"):
        base_stack_for(site)

    register_base_stack(
        lambda s: BaseStack(version="9", files={"apps/pos/deployment.yaml": "x", "apps/base-stack/a.yaml": "y"})
    )
    with pytest.raises(BaseStackUnavailable, match="outside apps/base-stack/: apps/pos/deployment.yaml"):
        base_stack_for(site)

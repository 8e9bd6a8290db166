"""`site.onboard` against the simulator's git host (FLEET_GIT_HOST=gitlab pointed at it), advanced by the
engine in this process: the git host's refusals and faults each reach the run's timeline as a sentence, with
nothing half-created and a retry going on from where it stopped."""

from pathlib import Path
from typing import Any

import gitlab.exceptions
import pytest
from django.utils import timezone

from fleet.workflows import retry
from fleet.workflows.choices import RunState
from simulator.testing import Simulator
from sites import site_lifecycle
from sites.base_stack import OWNED_PREFIX
from sites.choices import SiteState
from sites.githost import _git_host
from sites.githost.base import MARKER_PATH
from sites.models import Node, Site
from sites.workflows import site_common
from tests.sites.onboard.support import drive, git, new_site, timeline
from tests.sites.test_lifecycle_support import at_step

pytestmark = pytest.mark.integration


def _project(sim: Simulator, code: str) -> Any:
    try:
        return sim.gitlab().projects.get(f"{sim.git_group}/{code}")
    except gitlab.exceptions.GitlabGetError:
        return None


@pytest.mark.parametrize(
    ("problem", "words"),
    [
        ("expired", ["401", "Token is expired", "FLEET_GITLAB_TOKEN"]),
        ("role", ["403", "Owner role"]),
        ("group", ["'no-such-group' does not exist", "FLEET_GITLAB_GROUP"]),
        ("not_ours", ["already holds commits that edgefleet did not write", MARKER_PATH]),
    ],
)
def test_a_refusing_git_host_fails_the_run_with_a_sentence_and_creates_nothing(
    sim: Simulator, gitlab_host: Any, problem: str, words: list[str]
) -> None:
    # Given a planned site and a git host that will refuse
    site = new_site()
    foreign = None
    if problem == "expired":
        gitlab_host.FLEET_GITLAB_TOKEN = sim.create_git_token(expires_at="2020-01-01")["token"]
    elif problem == "role":
        gitlab_host.FLEET_GITLAB_TOKEN = sim.create_git_token(access_level=20)["token"]
    elif problem == "group":
        gitlab_host.FLEET_GITLAB_GROUP = "no-such-group"
    else:
        group = sim.gitlab().groups.get(sim.git_group)
        foreign = sim.gitlab().projects.create({"name": site.code, "path": site.code, "namespace_id": group.id})
        foreign.files.create({"file_path": "README.md", "branch": "main", "content": "mine", "commit_message": "x"})

    # When it is onboarded
    run = drive(site_lifecycle.site_onboard_request(site=site, actor="test", source="test").run)

    # Then the run failed at `project` with the git host's sentence, and nothing was created or changed
    assert run.state == RunState.FAILED and run.current_step == "project"
    for word in words:
        assert word in run.error, run.error
    assert timeline(run)[-1][:2] == ("project", "failed")
    assert sim.gitlab_token not in run.error
    site.refresh_from_db()
    assert (site.state, site.repo_url) == (SiteState.PROVISIONING, "")
    project = _project(sim, site.code)
    if foreign is None:
        assert project is None
    else:
        assert project.id == foreign.id and not project.archived and project.files.raw("README.md", ref="main")


def test_a_retry_after_the_token_was_renewed_continues_where_the_run_stopped(
    sim: Simulator, gitlab_host: Any, tmp_path: Path
) -> None:
    # Given an onboarding that failed on an expired token
    site = new_site()
    gitlab_host.FLEET_GITLAB_TOKEN = sim.create_git_token(expires_at="2020-01-01")["token"]
    run = drive(site_lifecycle.site_onboard_request(site=site, actor="test", source="test").run)
    assert run.state == RunState.FAILED and run.current_step == "project"

    # When the token is renewed and the run retried (the site has no cluster credentials yet)
    gitlab_host.FLEET_GITLAB_TOKEN = sim.gitlab_token
    _git_host.cache_clear()
    run = drive(retry(run=run, actor="test", source="test"), until=at_step("point_edge"))

    # Then it went on from `project`: the project exists once, its first commit is the base stack, and the
    # run waits for the site's cluster with a sentence saying what is missing
    steps = timeline(run)
    assert [s for s, state, _ in steps if state == "done"] == ["begin", "project", "base_stack", "first_boot"]
    assert "has no API address or credentials yet" in steps[-1][2]
    project = _project(sim, site.code)
    assert project is not None and project.default_branch == "main"
    clone = tmp_path / "clone"
    url = sim.git_url(site.code).replace("https://", f"https://edgefleet:{sim.gitlab_token}@")
    git("clone", "-q", url, str(clone), env={"GIT_SSL_CAINFO": str(sim.ca_cert)})
    assert git("rev-list", "--format=%H", "--no-commit-header", "HEAD", cwd=clone).split() == [
        run.context["base_stack"]["revision"]
    ]
    assert site.code in (clone / MARKER_PATH).read_text() and (clone / OWNED_PREFIX / "flux-system/sync.yaml").exists()
    site.refresh_from_db()
    assert site.repo_url == sim.git_url(site.code)
    assert list(sim.gitlab().projects.get(project.id).deploytokens.list()) == []  # none before the edge answers


@pytest.mark.parametrize(
    ("fault", "words"),
    [
        ({"kind": "throttle", "seconds": 7}, ["rate-limiting edgefleet (429)", "try again in 7s"]),
        ({"kind": "api_error"}, ["failed (50"]),
        ({"kind": "offline"}, ["cannot reach the git host"]),
    ],
)
def test_an_unavailable_git_host_is_retried_then_waited_for_and_the_run_goes_on(
    sim: Simulator, gitlab_host: Any, fault: dict[str, Any], words: list[str]
) -> None:
    # Given a git host that is busy, failing or unreachable
    site = new_site()
    fault_id = sim.add_fault(site="githost", **fault)
    run = site_lifecycle.site_onboard_request(site=site, actor="test", source="test").run

    # When the run tries: retried with backoff (after the host's Retry-After), then it waits
    run = drive(run, until=lambda r: r.current_step == "project" and r.state == "waiting")
    if fault.get("seconds"):
        assert run.wake_at is not None
        assert 5 < (run.wake_at - timezone.now()).total_seconds() <= 7.5  # the host's Retry-After, not a guess
    run = drive(run, until=lambda r: r.steps.filter(step="project", state="waiting").exists())

    # Then the timeline says what happened, in the git host's words, and the run is still going
    rows = [row for row in timeline(run) if row[0] == "project"]
    assert [state for _, state, _ in rows] == ["retrying"] * (site_common.GIT_HOST_RETRIES - 1) + ["waiting"], rows
    for _, _, message in rows:
        for word in words:
            assert word in message, message
    assert rows[-1][2].endswith("s") and "trying again in" in rows[-1][2]
    assert run.state == RunState.WAITING

    # And once the host is back it continues: one project, then on to the site's cluster
    sim.remove_fault(fault_id)
    assert _project(sim, site.code) is None
    run = drive(run, until=at_step("point_edge"))
    assert _project(sim, site.code) is not None
    assert Node.objects.filter(site=site).count() == 0 and Site.objects.get(pk=site.pk).state == "provisioning"

"""The base stack is a release like any other: the platform's `base-stack` application, releases made from
templates/base-stack/<version>/ with the platform's values, rendered by the same sandboxed renderer and
written where any release's files go, so that onboarding's commit and a rollout of the release agree."""

import io
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from django.core.management import call_command

from rollouts import base_stack
from rollouts.models import Application, Release
from rollouts.rendering import render_site_files
from rollouts.services import rollout_plan_create
from sites.base_stack import OWNED_PREFIX, BaseStackUnavailable, base_stack_for
from tests.factories import SiteFactory

pytestmark = pytest.mark.django_db

REPO_TEMPLATES = Path(__file__).resolve().parents[2] / "templates" / "base-stack"


@pytest.fixture
def templates(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the project's template sets, for tests that add a version."""
    root = tmp_path / "base-stack"
    shutil.copytree(REPO_TEMPLATES, root)
    monkeypatch.setattr(base_stack, "templates_root", lambda: root)
    return root


def documents(text: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


def test_the_release_is_made_once_from_the_current_template_version(settings: Any) -> None:
    settings.FLEET_LOG_SINK = "https://logs.example.com/edge"

    first = base_stack.base_stack_release()
    again = base_stack.base_stack_release()

    assert first.pk == again.pk and Release.objects.count() == 1
    application = Application.objects.get(name="base-stack")
    assert (application.team, application.namespace) == ("platform", "edgefleet-system")
    assert application.namespaces == ["edgefleet-system", "flux-system", "kube-system", "system-upgrade"]
    newest = base_stack.template_versions()[-1]
    assert first.version == newest and first.templates == base_stack.read_templates(newest)
    assert first.values["log_sink"] == "https://logs.example.com/edge"


def test_another_log_sink_is_a_new_release_and_the_first_one_never_changes(settings: Any) -> None:
    settings.FLEET_LOG_SINK = "https://logs.example.com/edge"
    first = base_stack.base_stack_release()

    settings.FLEET_LOG_SINK = "https://logs.example.net/v2"
    second = base_stack.base_stack_release()

    assert second.version.startswith(f"{first.version}+") and second.values["log_sink"] == "https://logs.example.net/v2"
    first.refresh_from_db()
    assert first.values["log_sink"] == "https://logs.example.com/edge"
    assert base_stack.base_stack_release().pk == second.pk
    settings.FLEET_LOG_SINK = "https://logs.example.com/edge"
    assert base_stack.base_stack_release().pk == first.pk


def test_onboarding_renders_what_a_rollout_of_the_release_writes(settings: Any) -> None:
    # Given FLEET_GIT_HOST=gitlab and a log sink
    settings.FLEET_GIT_HOST = "gitlab"
    settings.FLEET_GITLAB_URL = "https://git.example.com"
    settings.FLEET_GITLAB_GROUP = "acme/restaurants"
    settings.FLEET_LOG_SINK = "https://logs.example.com/edge"
    site = SiteFactory(code="TX-0412")

    # When sites asks for the base stack (the provider the rollouts app registered)
    stack = base_stack_for(site)

    # Then it is the release's files for the site, where a rollout of that release writes them
    release = Release.objects.get(pk=stack.release_id)
    assert stack.files == render_site_files(release, site)
    assert all(path.startswith(f"{OWNED_PREFIX}/") for path in stack.files)
    source, sync = documents(stack.files[f"{OWNED_PREFIX}/flux-system/sync.yaml"])
    assert source["spec"]["url"] == "https://git.example.com/acme/restaurants/TX-0412.git"
    assert source["spec"]["secretRef"] == {"name": "site-git"}
    assert sync["spec"]["sourceRef"] == {"kind": "GitRepository", "name": "site"} and sync["spec"]["path"] == "./"
    vector = documents(stack.files[f"{OWNED_PREFIX}/vector/config.yaml"])[0]
    config = yaml.safe_load(vector["data"]["vector.yaml"])
    assert config["sinks"]["fleet"]["uri"] == "https://logs.example.com/edge"
    assert config["transforms"]["site"]["source"].strip() == '.site = "TX-0412"'
    kube_system = documents(stack.files[f"{OWNED_PREFIX}/kube-system/namespace.yaml"])[0]
    assert kube_system["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "privileged"

    # And it can be rolled out like any release: a plan with waves and a failure gate is accepted
    plan = rollout_plan_create(
        actor="test",
        source="test",
        name="base stack",
        release=release,
        target={"all": True},
        waves=[{"name": "canary", "count": 1}, {"percent": 100}],
        failure_threshold={"count": 0},
    )
    assert plan.release_id == release.pk


def test_without_a_sink_the_logs_stay_at_the_edge(settings: Any) -> None:
    settings.FLEET_LOG_SINK = ""
    stack = base_stack_for(SiteFactory())
    config = yaml.safe_load(documents(stack.files[f"{OWNED_PREFIX}/vector/config.yaml"])[0]["data"]["vector.yaml"])
    assert config["sinks"]["fleet"] == {"type": "blackhole", "inputs": ["site"]}
    sync = documents(stack.files[f"{OWNED_PREFIX}/flux-system/sync.yaml"])[0]
    assert sync["spec"]["url"].startswith("file://") and "secretRef" not in sync["spec"]


def test_a_new_template_version_is_a_new_release_and_can_be_pinned(templates: Path, settings: Any) -> None:
    # Given a version 1.1.0 beside 1.0.0 that changes Vector's configuration
    shutil.copytree(templates / "1.0.0", templates / "1.1.0")
    config = templates / "1.1.0" / "vector" / "config.yaml"
    config.write_text(config.read_text().replace("enabled: false", "enabled: true"))
    old = base_stack.base_stack_release("1.0.0")

    # Then the newest is current, made into its own release; FLEET_BASE_STACK_VERSION pins another
    assert base_stack.template_versions() == ["1.0.0", "1.1.0"]
    new = base_stack.base_stack_release()
    assert new.version == "1.1.0" and new.pk != old.pk
    assert (
        "enabled: true" in new.templates["vector/config.yaml"]
        and "enabled: false" in old.templates["vector/config.yaml"]
    )
    settings.FLEET_BASE_STACK_VERSION = "1.0.0"
    assert base_stack_for(SiteFactory()).version == "1.0.0"
    settings.FLEET_BASE_STACK_VERSION = "9.9"
    with pytest.raises(BaseStackUnavailable, match="no base stack template version 9.9"):
        base_stack.base_stack_release()

    # And the command makes the release of a version ahead of its rollout
    settings.FLEET_BASE_STACK_VERSION = ""
    out = io.StringIO()
    call_command("base_stack_release", "--template-version", "1.1.0", stdout=out)
    assert f"base stack release {new.pk}: base-stack 1.1.0" in out.getvalue()


def test_the_base_stack_carries_the_system_upgrade_controller() -> None:
    stack = base_stack_for(SiteFactory())
    docs = [doc for path, text in stack.files.items() if "/system-upgrade/" in path for doc in documents(text)]
    kinds = {(doc["kind"], doc["metadata"].get("namespace", ""), doc["metadata"]["name"]) for doc in docs}
    assert {
        ("Namespace", "", "system-upgrade"),
        ("ServiceAccount", "system-upgrade", "system-upgrade"),
        ("ClusterRoleBinding", "", "system-upgrade"),
        ("Deployment", "system-upgrade", "system-upgrade-controller"),
        ("CustomResourceDefinition", "", "plans.upgrade.cattle.io"),
    } <= kinds

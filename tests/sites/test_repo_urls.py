"""The git policy on write: which repo_url a site may have. Every door (API, admin, fleet_import) refuses
a dangerous URL with a 400 naming `repo_url` and writes nothing; production refuses to start with a git
token that no host may receive. The checks at use, against real git, are in test_repo_attacks.py."""

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.test import Client
from rest_framework.test import APIClient

from fleet.audit.models import AuditEvent
from fleet.errors import Invalid
from sites.imports import fleet_import
from sites.models import Site
from sites.repo_urls import GitPolicy, HostEntry, RepoUrlRefused, token_scope
from tests.factories import SiteFactory
from tests.sites.conftest import site_admin_form
from tests.support.services import PRODUCTION_ENV

HOST = "gitlab.example.com"
NEW_SITE = {"code": "TX-0412", "name": "Austin Lamar", "region": "us-south", "timezone": "America/Chicago"}
ROOT = Path(__file__).resolve().parents[2]

# (URL, what the refusal says). FLEET_GIT_HOSTS lists gitlab.example.com in these tests, so a refusal
# is never just "the list is empty".
BAD_URLS = [
    ("ext::sh -c touch% /tmp/pwned", "remote helper 'ext'"),
    ("fd::17", "remote helper 'fd'"),
    ("file:///etc", "outside the directories local repositories may live in"),
    ("/etc/passwd", "outside the directories local repositories may live in"),
    ("file://attacker.example/x.git", "not an absolute local path"),
    ("../../etc/x.git", "not an absolute local path"),
    ("repos/TX-0412.git", "not an absolute local path"),
    ("-uhttps://gitlab.example.com/x.git", "starts with '-'"),
    ("--upload-pack=touch /tmp/pwned", "starts with '-'"),
    ("https://deploy:s3cr3t-pw@gitlab.example.com/x.git", "holds a password"),
    ("ssh://git:s3cr3t-pw@gitlab.example.com/x.git", "holds a password"),
    ("https://deploy@gitlab.example.com/x.git", "holds a user name"),
    ("https://gitlab.example.com@attacker.example/x.git", "holds a user name"),
    ("ftp://gitlab.example.com/x.git", "scheme 'ftp' is not allowed"),
    ("git://gitlab.example.com/x.git", "scheme 'git' is not allowed"),
    ("HTTPS://gitlab.example.com/x.git", "scheme 'HTTPS' is not allowed"),
    ("https://attacker.example/x.git", "git host attacker.example is not in FLEET_GIT_HOSTS"),
    ("https://gitlab.example.com.attacker.example/x.git", "is not in FLEET_GIT_HOSTS"),
    ("https://gitlab.example.com:8443/x.git", "git host gitlab.example.com:8443 is not in FLEET_GIT_HOSTS"),
    ("ssh://git@attacker.example/x.git", "git host attacker.example is not in FLEET_GIT_HOSTS"),
    ("git@attacker.example:fleet/x.git", "git host attacker.example is not in FLEET_GIT_HOSTS"),
    ("http://gitlab.example.com/x.git", "plain http:// only reaches this machine"),
    ("http://127.0.0.1:9/x.git", "git host 127.0.0.1:9 is not in FLEET_GIT_HOSTS"),
    ("https://gitlab.example.com/x.git?ref=evil", "needs a repository path"),
    ("https://gitlab.example.com/x.git#@attacker.example/", "needs a repository path"),
    ("https://gitlab.example.com\\@attacker.example/x.git", "holds a user name"),
    ("https://gitlab.example.com\\.attacker.example/x.git", "names no valid host"),
    ("https://gitlab.example.com", "needs a repository path"),
    ("https://gitlab.example.com/x.git\n", "control characters"),
    ("git@gitlab.example.com:-oProxyCommand=x", "needs a repository path"),
    ("ssh://-oProxyCommand=x@gitlab.example.com/x.git", "not a valid ssh user name"),
]


@pytest.fixture(autouse=True)
def _listed_host(settings: Any) -> None:
    settings.FLEET_GIT_HOSTS = [HOST]


# --- the policy -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("url", "reason"), BAD_URLS, ids=[url for url, _ in BAD_URLS])
def test_the_policy_refuses_each_dangerous_url_saying_why(url: str, reason: str) -> None:
    with pytest.raises(RepoUrlRefused) as caught:
        GitPolicy.from_settings().check(url)
    assert reason in str(caught.value)
    assert "s3cr3t-pw" not in str(caught.value)


@pytest.mark.parametrize(
    ("url", "canonical"),
    [
        ("https://gitlab.example.com/fleet/tx-0412.git", "https://gitlab.example.com/fleet/tx-0412.git"),
        ("https://GitLab.Example.COM/fleet/tx-0412.git", "https://gitlab.example.com/fleet/tx-0412.git"),
        ("https://gitlab.example.com:443/fleet/x.git", "https://gitlab.example.com:443/fleet/x.git"),
        ("ssh://git@gitlab.example.com/fleet/x.git", "ssh://git@gitlab.example.com/fleet/x.git"),
        ("git@GITLAB.example.com:fleet/x.git", "git@gitlab.example.com:fleet/x.git"),
    ],
)
def test_listed_hosts_pass_in_canonical_form(url: str, canonical: str) -> None:
    assert GitPolicy.from_settings().check(url).url == canonical


def test_local_repositories_only_under_the_roots_and_never_in_production(
    settings: Any, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    inside = Path(settings.REPO_ROOT) / "TX-0412.git"
    assert GitPolicy.from_settings().check(str(inside)).transport == "file"
    assert GitPolicy.from_settings().check(inside.as_uri()).path == Path(os.path.realpath(inside))
    # A symbolic link under a root that leads outside it is judged by where it leads
    (tmp_path / "escape").symlink_to("/etc")
    with pytest.raises(RepoUrlRefused, match="outside the directories"):
        GitPolicy.from_settings().check(f"file://{tmp_path}/escape/x.git")
    with pytest.raises(RepoUrlRefused, match="outside the directories"):
        GitPolicy.from_settings().check(f"{settings.REPO_ROOT}/../../../etc/x.git")
    with pytest.raises(RepoUrlRefused, match="edgefleet's own working clones"):
        GitPolicy.from_settings().check(str(Path(settings.REPO_CACHE_DIR) / "TX-0001"))

    settings.PRODUCTION = True
    with pytest.raises(RepoUrlRefused, match="only the embedded set-up allows"):
        GitPolicy.from_settings().check(str(inside))
    settings.FLEET_GIT_HOSTS = ["127.0.0.1:8080"]
    with pytest.raises(RepoUrlRefused, match="plain http:// is not allowed"):
        GitPolicy.from_settings().check("http://127.0.0.1:8080/x.git")


def test_the_token_is_scoped_to_the_token_host_only() -> None:
    policy = GitPolicy(hosts=(HostEntry.parse(HOST), HostEntry.parse("mirror.example.com")))
    token_host = policy.check("https://gitlab.example.com/fleet/x.git")
    other = policy.check("https://mirror.example.com/fleet/x.git")
    ssh = policy.check("git@gitlab.example.com:fleet/x.git")

    assert token_scope(token_host, HOST) == "https://gitlab.example.com/"
    assert token_scope(other, HOST) is None
    assert token_scope(ssh, HOST) is None
    assert token_scope(token_host, "") is None
    assert token_scope(token_host, "gitlab.example.com:8443") is None


# --- the doors --------------------------------------------------------------------------------------


# The API trims surrounding white space before anything else looks at the value.
API_BAD_URLS = [(url, reason) for url, reason in BAD_URLS if url == url.strip()]


@pytest.mark.django_db
@pytest.mark.parametrize(("url", "reason"), API_BAD_URLS, ids=[url for url, _ in API_BAD_URLS])
def test_the_api_refuses_a_bad_repo_url_with_a_400_naming_it(admin_api: APIClient, url: str, reason: str) -> None:
    existing = SiteFactory(code="TX-0001", repo_url="")

    created = admin_api.post("/api/v1/sites/", {**NEW_SITE, "repo_url": url}, format="json")
    patched = admin_api.patch(f"/api/v1/sites/{existing.code}/", {"repo_url": url}, format="json")

    for response in (created, patched):
        assert response.status_code == 400, response.content
        body = response.json()
        assert body["detail"].startswith("repo_url: ") and reason in body["detail"]
        assert reason in body["repo_url"][0]
        assert "s3cr3t-pw" not in response.content.decode()
    assert not Site.objects.filter(code=NEW_SITE["code"]).exists()
    assert Site.objects.get(pk=existing.pk).repo_url == ""
    assert not AuditEvent.objects.filter(verb__in=["create", "update"], object_id=str(existing.pk)).exists()


@pytest.mark.django_db
def test_the_api_stores_an_allowed_url_in_canonical_form(admin_api: APIClient) -> None:
    response = admin_api.post(
        "/api/v1/sites/", {**NEW_SITE, "repo_url": "git@GitLab.example.com:fleet/tx-0412.git"}, format="json"
    )
    assert response.status_code == 201, response.content
    assert Site.objects.get(code="TX-0412").repo_url == "git@gitlab.example.com:fleet/tx-0412.git"


@pytest.mark.django_db
def test_the_admin_refuses_a_bad_repo_url_on_the_form(admin_user: Any) -> None:
    client = Client()
    client.force_login(admin_user)
    form = site_admin_form(**NEW_SITE, repo_url="http://attacker.example/x.git")

    added = client.post("/admin/sites/site/add/", form)
    site = SiteFactory(code="TX-0002", repo_url="")
    changed = client.post(f"/admin/sites/site/{site.pk}/change/", {**form, "code": "TX-0002", "state": "active"})

    for response in (added, changed):
        assert response.status_code == 200  # the form again, with the error
        errors = response.context["adminform"].form.errors
        assert "plain http:// only reaches this machine" in errors["repo_url"][0]
    assert not Site.objects.filter(code="TX-0412").exists()
    assert Site.objects.get(pk=site.pk).repo_url == ""


@pytest.mark.django_db
def test_fleet_import_refuses_a_bad_repo_url_and_writes_nothing() -> None:
    good = {**NEW_SITE, "repo_url": "https://gitlab.example.com/fleet/tx-0412.git", "nodes": []}
    bad = {**NEW_SITE, "code": "TX-0413", "repo_url": "ext::sh -c touch% /tmp/pwned", "nodes": []}

    with pytest.raises(Invalid) as caught:
        fleet_import(data={"sites": [good, bad]}, actor="test")

    assert caught.value.message.startswith("sites[1]: repo_url: ") and "remote helper 'ext'" in caught.value.message
    assert "repo_url" in caught.value.errors
    assert not Site.objects.exists() and not AuditEvent.objects.exists()


# --- settings ---------------------------------------------------------------------------------------


def _check(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("FLEET_")}
    return subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=ROOT,
        env={**clean, "FLEET_DATA_DIR": str(django_settings.DATA_DIR), **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


PRODUCTION = PRODUCTION_ENV


def test_a_token_without_a_host_to_go_to_refuses_to_start() -> None:
    orphan = _check({"FLEET_GIT_TOKEN": "glpat-x"})
    elsewhere = _check({"FLEET_GIT_HOSTS": f"{HOST},bad host!", "FLEET_GIT_TOKEN_HOST": "mirror.example.com"})
    local_in_production = _check({**PRODUCTION, "FLEET_GIT_LOCAL_ROOTS": "/srv/repos"})
    configured = _check({**PRODUCTION, "FLEET_GIT_HOSTS": f"{HOST},mirror.example.com", "FLEET_GIT_TOKEN": "x"})

    assert orphan.returncode != 0 and "FLEET_GIT_TOKEN is set but no host may receive it" in orphan.stderr
    assert elsewhere.returncode != 0
    assert "FLEET_GIT_HOSTS entry 'bad host!' is not host or host:port" in elsewhere.stderr
    assert "FLEET_GIT_TOKEN_HOST 'mirror.example.com' is not one of FLEET_GIT_HOSTS" in elsewhere.stderr
    assert local_in_production.returncode != 0
    assert "production never uses local repositories" in local_in_production.stderr
    assert configured.returncode == 0, configured.stderr

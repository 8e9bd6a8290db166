"""The git host pieces that need no simulator: the local host (bare repositories on our disk), the factory,
GitLab's path rules against site codes, encrypted secrets in settings, and SiteRepo's TLS settings."""

import io
import itertools
import subprocess
from pathlib import Path
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured, ValidationError
from django.core.management import call_command

from simulator.githost.paths import path_problem as simulator_path_problem
from sites.crypto import setting_secret
from sites.githost import GitHostRefused, git_host
from sites.githost.gitlab import GitLabHost
from sites.githost.local import LocalHost
from sites.githost.paths import path_problem
from sites.repos import Author, GitCredentials, RepoError, SiteRepo
from sites.validators import SITE_CODE_RE, validate_site_code

# --- site codes and GitLab's path rules -----------------------------------------------------------------

SAMPLES = [
    "TX-0412", "AB-123", "ABC-123456", "tx-0412", "a", "A.b_c-d", "", "-TX", "TX-", "_a", "a_", ".a", "a.", "a..b",
    "a-_b", "x.git", "x.atom", "X.GIT", "a b", "a/b", "tree", "Tree", "raw", "new", "a" * 255, "a" * 256, "é", "a+b",
]  # fmt: skip


@pytest.mark.parametrize("sample", SAMPLES)
def test_our_copy_of_the_path_rules_and_the_simulators_agree(sample: str) -> None:
    assert (path_problem(sample) is None) == (simulator_path_problem(sample) is None)


def test_every_shape_of_site_code_is_a_valid_gitlab_project_path() -> None:
    # SITE_CODE_RE: two or three capitals, a dash, three to six digits. Walk every length and edge character.
    for letters, digits in itertools.product(("AA", "ZZ", "ABC", "XYZ"), ("000", "999", "0412", "123456", "000000")):
        code = f"{letters}-{digits}"
        assert SITE_CODE_RE.match(code)
        assert path_problem(code) is None, code
        validate_site_code(code)


@pytest.mark.parametrize("code", ["TX-0412.git", "-TX-0412", "TX--0412", "TX-0412 ", "tree", "TX_0412"])
def test_a_code_the_git_host_would_refuse_is_refused(code: str) -> None:
    with pytest.raises(ValidationError):
        validate_site_code(code)


def test_the_validator_applies_gitlabs_rules_beside_its_own_pattern(monkeypatch: pytest.MonkeyPatch) -> None:
    # Were the pattern ever loosened, a code GitLab refuses would still be refused, naming the reason.
    import re

    monkeypatch.setattr("sites.validators.SITE_CODE_RE", re.compile(r"^.+$"))
    with pytest.raises(ValidationError, match="cannot name the site's project on the git host"):
        validate_site_code("TX-0412.git")


@pytest.mark.django_db
def test_creating_a_site_with_such_a_code_is_a_400_naming_the_code(admin_api: Any) -> None:
    answer = admin_api.post(
        "/api/v1/sites/", {"code": "TX-0412.git", "name": "x", "region": "south", "timezone": "UTC"}, format="json"
    )
    assert answer.status_code == 400
    assert "code" in answer.json()


# --- the local host ---------------------------------------------------------------------------------------


def _git(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": "/dev/null", "HOME": "/tmp"}
    return subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=30, check=False)


def test_local_host_creates_a_protected_bare_repository_and_archives_it(tmp_path: Path, settings: Any) -> None:
    settings.REPO_CACHE_DIR = tmp_path / "cache"
    host = LocalHost(tmp_path / "repos")
    assert host.find_project("TX-0412") is None

    first = host.ensure_project("TX-0412")
    assert first.changes == ("created", "protected") and first.empty
    assert host.ensure_project("TX-0412").changes == ()
    assert host.issue_deploy_token("TX-0412") is None and host.deploy_tokens("TX-0412") == []

    repo = SiteRepo.from_settings("TX-0412", first.clone_url)
    written = repo.write({"a.yaml": "a: 1\n"}, owned_prefix=None, message="first", author=Author.of("t"))
    repo.write({"a.yaml": "a: 2\n"}, owned_prefix=None, message="second", author=Author.of("t"))
    # A force push back to the first commit is refused by the repository itself.
    clone = tmp_path / "clone"
    assert _git("clone", "-q", first.clone_url, str(clone)).returncode == 0
    forced = _git("push", "-f", "origin", f"{written.revision}:refs/heads/main", cwd=clone)
    assert forced.returncode != 0 and "non-fast-forward" in forced.stderr

    archived = host.archive_project("TX-0412")
    assert archived is not None and archived.archived
    with pytest.raises(RepoError, match="archived"):
        repo.write({"a.yaml": "a: 3\n"}, owned_prefix=None, message="third", author=Author.of("t"))
    with pytest.raises(GitHostRefused, match="archived"):
        host.ensure_project("TX-0412")
    assert host.archive_project("TX-0999") is None


def test_the_factory_follows_fleet_git_host(settings: Any, tmp_path: Path) -> None:
    settings.FLEET_GIT_HOST = "local"
    settings.REPO_ROOT = tmp_path
    assert isinstance(git_host(), LocalHost)
    settings.FLEET_GIT_HOST = "gitlab"
    settings.FLEET_GITLAB_URL = "https://gitlab.example.com"
    settings.FLEET_GITLAB_TOKEN = "glpat-x"
    settings.FLEET_GITLAB_GROUP = "acme/restaurants"
    host = git_host()
    assert isinstance(host, GitLabHost)
    assert host.clone_url("TX-0412") == "https://gitlab.example.com/acme/restaurants/TX-0412.git"


# --- secrets in settings ----------------------------------------------------------------------------------


def test_an_encrypted_setting_is_decrypted_at_use(settings: Any) -> None:
    out = io.StringIO()
    stdin = io.StringIO("glpat-the-real-token\n")
    import sys

    saved, sys.stdin = sys.stdin, stdin
    try:
        call_command("encrypt_secret", stdout=out)
    finally:
        sys.stdin = saved
    encrypted = out.getvalue().strip()
    assert encrypted.startswith("fernet:") and "glpat-the-real-token" not in encrypted

    assert setting_secret(encrypted, "FLEET_GITLAB_TOKEN") == "glpat-the-real-token"
    assert setting_secret("plain", "FLEET_GITLAB_TOKEN") == "plain"
    settings.FLEET_GITLAB_URL, settings.FLEET_GITLAB_TOKEN, settings.FLEET_GITLAB_GROUP = (
        "https://gitlab.example.com", encrypted, "fleet",
    )  # fmt: skip
    assert GitLabHost.from_settings()._GitLabHost__token == "glpat-the-real-token"  # type: ignore[attr-defined]

    settings.FLEET_SECRET_KEYS = ["P2w9bVmM5cC8r8s7Yq0sQ3qL1bQfYpKqZCw0n4m6m5Q="]
    with pytest.raises(ImproperlyConfigured, match="FLEET_GITLAB_TOKEN cannot be decrypted"):
        setting_secret(encrypted, "FLEET_GITLAB_TOKEN")


# --- SiteRepo and TLS -------------------------------------------------------------------------------------


def test_the_ca_file_becomes_gits_ca_and_verification_is_never_off(tmp_path: Path, monkeypatch: Any) -> None:
    ca = tmp_path / "ca.crt"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    policy_hosts = ["gitlab.example.com"]
    from sites.repo_urls import GitPolicy, HostEntry

    policy = GitPolicy(hosts=tuple(HostEntry.parse(h) for h in policy_hosts))
    repo = SiteRepo(
        "TX-0412",
        "https://gitlab.example.com/fleet/TX-0412.git",
        cache_dir=tmp_path,
        credentials=GitCredentials(ca_file=str(ca)),
        policy=policy,
    )
    config = {
        repo._base_env[f"GIT_CONFIG_KEY_{i}"]: repo._base_env[f"GIT_CONFIG_VALUE_{i}"]
        for i in range(int(repo._base_env["GIT_CONFIG_COUNT"]))
    }
    assert config["http.sslCAInfo"] == str(ca)
    assert repo._base_env["GIT_SSL_CAINFO"] == str(ca)  # git prefers an inherited variable to its config
    assert "http.sslVerify" not in config and "GIT_SSL_NO_VERIFY" not in repo._base_env

    # A worker whose environment would switch verification off refuses to run git at all.
    monkeypatch.setenv("GIT_SSL_NO_VERIFY", "1")
    with pytest.raises(RepoError, match="GIT_SSL_NO_VERIFY"):
        SiteRepo("TX-0412", "https://gitlab.example.com/fleet/TX-0412.git", cache_dir=tmp_path, policy=policy)

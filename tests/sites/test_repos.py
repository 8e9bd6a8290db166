"""SiteRepo against real bare repositories on disk, checked with plain `git` commands. No mocks of git.

"Someone else" (a human, another worker) is played by plain `git clone` + `commit` + `push`, or by a real
git hook in our clone that pushes at the worst possible moment.
"""

from pathlib import Path
from types import SimpleNamespace

import pytest

from sites.repos import Author, CommitResult, RepoError, SiteRepo, UnsafeUrl
from tests.sites.gitcheck import ANN, git, log, push_as_someone_else, show, tree_files

# --- writing --------------------------------------------------------------------------------------


def test_write_creates_exactly_one_commit_with_author_and_files(repo: SiteRepo, bare: Path) -> None:
    # Given an empty site repository
    # When files are written
    result = repo.write(
        {"apps/pos/deploy.yaml": "image: pos:1\n", "apps/pos/bin.dat": b"\x00\x01\n"},
        owned_prefix="apps/pos",
        message="Roll out pos 1",
        author=ANN,
    )
    # Then main has one commit, by the actor, holding exactly those bytes
    assert result.changed and result.previous is None
    assert log(bare) == [result.revision]
    assert git(f"--git-dir={bare}", "log", "-1", "--format=%an|%ae|%cn|%s", "main") == (
        "Ann Operator|ann@example.com|edgefleet|Roll out pos 1"
    )
    assert tree_files(bare) == {"apps/pos/deploy.yaml", "apps/pos/bin.dat"}
    assert show(bare, "main", "apps/pos/deploy.yaml") == "image: pos:1"
    assert repo.read("apps/pos/bin.dat") == b"\x00\x01\n"
    assert repo.head() == result.revision


def test_writing_the_same_files_again_creates_no_commit(repo: SiteRepo, bare: Path, seeded: CommitResult) -> None:
    # When the same write happens again (a retried workflow step)
    again = repo.write(
        {"kustomization.yaml": "resources: [apps/pos]\n", "apps/pos/deploy.yaml": "image: pos:1\n"},
        owned_prefix="apps/pos",
        message="Roll out pos 1",
        author=ANN,
    )
    # Then nothing is committed and the same revision is reported
    assert again == CommitResult(revision=seeded.revision, changed=False, previous=seeded.revision, attempts=1)
    assert log(bare) == [seeded.revision]


def test_a_commit_is_found_again_by_its_trailer_with_its_parent(
    repo: SiteRepo, bare: Path, seeded: CommitResult, tmp_path: Path
) -> None:
    # Given a marked commit, then somebody else's commit on top of it
    marked = repo.write(
        {"apps/pos/deploy.yaml": "image: pos:2\n"},
        owned_prefix="apps/pos",
        message="Roll out pos 2\n\nEdgefleet-Rollout: 4.2",
        author=ANN,
    )
    push_as_someone_else(bare, tmp_path / "human", {"README.md": "hello\n"})
    # When it is looked up by its trailer (as a step that crashed after its push does)
    found = repo.find_trailer("Edgefleet-Rollout: 4.2")
    # Then it is that commit with the head before it as parent; a trailer that only starts the same, or
    # whose dot would match any character, is not confused with it
    assert found is not None and (found.revision, found.parent) == (marked.revision, seeded.revision)
    assert repo.find_trailer("Edgefleet-Rollout: 4") is None
    assert repo.find_trailer("Edgefleet-Rollout: 4x2") is None
    with pytest.raises(RepoError, match="invalid trailer"):
        repo.find_trailer("Edgefleet-Rollout: $(reboot)")


def test_the_first_commit_found_by_its_trailer_has_no_parent(repo: SiteRepo) -> None:
    assert repo.find_trailer("Edgefleet-Rollout: 1") is None  # an empty repository
    first = repo.write({"a.yaml": "a: 1\n"}, owned_prefix=None, message="first\n\nEdgefleet-Rollout: 1", author=ANN)
    found = repo.find_trailer("Edgefleet-Rollout: 1")
    assert found is not None and (found.revision, found.parent) == (first.revision, None)


def test_owned_prefix_removes_only_files_the_write_owns(
    repo: SiteRepo, bare: Path, seeded: CommitResult, tmp_path: Path
) -> None:
    # Given an extra owned file, and a human's file outside the owned directory
    repo.write(
        {"apps/pos/deploy.yaml": "image: pos:1\n", "apps/pos/old/config.yaml": "x: 1\n"},
        owned_prefix="apps/pos",
        message="add config",
        author=ANN,
    )
    push_as_someone_else(bare, tmp_path / "human", {"apps/kiosk/deploy.yaml": "image: kiosk:3\n"})
    # When a write of the owned directory no longer lists some of its files
    result = repo.write(
        {"apps/pos/deploy.yaml": "image: pos:2\n"}, owned_prefix="apps/pos", message="pos 2", author=ANN
    )
    # Then those are removed, and nothing outside the owned directory is
    assert result.changed
    assert tree_files(bare) == {"kustomization.yaml", "apps/pos/deploy.yaml", "apps/kiosk/deploy.yaml"}
    assert show(bare, "main", "apps/pos/deploy.yaml") == "image: pos:2"


def test_write_without_owned_prefix_removes_nothing(repo: SiteRepo, bare: Path, seeded: CommitResult) -> None:
    repo.write({"apps/other/a.yaml": "a\n"}, owned_prefix=None, message="add other", author=ANN)
    assert tree_files(bare) == {"kustomization.yaml", "apps/pos/deploy.yaml", "apps/other/a.yaml"}


def test_a_file_can_become_a_directory_and_back(repo: SiteRepo, bare: Path, seeded: CommitResult) -> None:
    repo.write({"apps/pos/deploy.yaml/x.yaml": "x\n"}, owned_prefix="apps/pos", message="dir", author=ANN)
    assert tree_files(bare) == {"kustomization.yaml", "apps/pos/deploy.yaml/x.yaml"}
    repo.write({"apps/pos/deploy.yaml": "image: pos:1\n"}, owned_prefix="apps/pos", message="file", author=ANN)
    assert tree_files(bare) == {"kustomization.yaml", "apps/pos/deploy.yaml"}


# --- reverting ------------------------------------------------------------------------------------


def test_revert_to_brings_the_owned_prefix_back_as_a_new_commit(
    repo: SiteRepo, bare: Path, seeded: CommitResult
) -> None:
    # Given a second release that changed, added and removed files in the owned directory
    second = repo.write(
        {"apps/pos/deploy.yaml": "image: pos:2\n", "apps/pos/hpa.yaml": "max: 3\n"},
        owned_prefix="apps/pos",
        message="Roll out pos 2",
        author=ANN,
    )
    repo.write({"README.md": "kept\n"}, owned_prefix=None, message="readme", author=ANN)
    # When rolled back to the first revision
    back = repo.revert_to(seeded.revision, owned_prefix="apps/pos", message="Roll back pos", author=ANN)
    # Then a new commit on top of head holds the old subtree; history is intact; the rest is untouched
    history = log(bare)
    assert back.changed and history[0] == back.revision and history[1] == back.previous
    assert second.revision in history and len(history) == 4
    assert git(f"--git-dir={bare}", "rev-parse", f"{back.revision}:apps/pos") == git(
        f"--git-dir={bare}", "rev-parse", f"{seeded.revision}:apps/pos"
    )
    assert show(bare, "main", "README.md") == "kept"
    # And reverting again is a no-op
    assert repo.revert_to(seeded.revision, owned_prefix="apps/pos", message="again", author=ANN).changed is False
    assert len(log(bare)) == 4


def test_revert_to_without_prefix_restores_the_whole_tree(repo: SiteRepo, bare: Path, seeded: CommitResult) -> None:
    repo.write(
        {"README.md": "x\n", "apps/pos/deploy.yaml": "image: pos:2\n"}, owned_prefix=None, message="b", author=ANN
    )
    back = repo.revert_to(seeded.revision, message="Roll back everything", author=ANN)
    assert git(f"--git-dir={bare}", "rev-parse", f"{back.revision}^{{tree}}") == git(
        f"--git-dir={bare}", "rev-parse", f"{seeded.revision}^{{tree}}"
    )
    assert len(log(bare)) == 3


def test_revert_to_an_unknown_revision_is_a_permanent_error(repo: SiteRepo, seeded: CommitResult) -> None:
    with pytest.raises(RepoError, match="not a commit"):
        repo.revert_to("0" * 40, owned_prefix="apps/pos", message="back", author=ANN)
    with pytest.raises(RepoError, match="invalid revision"):
        repo.revert_to("--upload-pack=evil", message="back", author=ANN)


def test_read_at_a_revision_and_missing_files(repo: SiteRepo, seeded: CommitResult) -> None:
    repo.write({"apps/pos/deploy.yaml": "image: pos:2\n"}, owned_prefix="apps/pos", message="2", author=ANN)
    assert repo.read("apps/pos/deploy.yaml") == b"image: pos:2\n"
    assert repo.read("apps/pos/deploy.yaml", seeded.revision) == b"image: pos:1\n"
    assert repo.read("apps/pos/nothing.yaml") is None
    assert repo.read("apps/pos") is None  # a directory is not a file


# --- construction ---------------------------------------------------------------------------------


def test_for_site_reads_settings_and_defaults_to_the_local_repository_root(settings: object, tmp_path: Path) -> None:
    settings.REPO_ROOT = tmp_path / "repos"
    settings.REPO_CACHE_DIR = tmp_path / "cache"
    settings.FLEET_GIT_SSH_KEY_FILE = "/keys/deploy key"
    site = SiteRepo.for_site(SimpleNamespace(code="TX-0412", repo_url=""))
    assert site.url == str(tmp_path / "repos" / "TX-0412.git")
    assert site.path == tmp_path / "cache" / "TX-0412"
    assert "-i '/keys/deploy key' -o IdentitiesOnly=yes" in site._base_env["GIT_SSH_COMMAND"]
    assert "StrictHostKeyChecking=accept-new" in site._base_env["GIT_SSH_COMMAND"]


def test_url_credentials_are_refused_without_being_repeated_and_bad_inputs_refused(tmp_path: Path) -> None:
    with pytest.raises(UnsafeUrl) as caught:
        SiteRepo("TX-0006", "https://bob:hunter2@git.example.com/x.git", cache_dir=tmp_path)
    assert "hunter2" not in str(caught.value) and "password" in str(caught.value)
    with pytest.raises(RepoError):
        SiteRepo("../etc", "/tmp/x.git", cache_dir=tmp_path)
    with pytest.raises(RepoError):
        SiteRepo("TX-0006", "--upload-pack=touch /tmp/pwned", cache_dir=tmp_path)
    with pytest.raises(ValueError):
        Author("Eve <eve@example.com>", "eve@example.com")


def test_author_of_an_actor() -> None:
    user = SimpleNamespace(get_username=lambda: "ann", get_full_name=lambda: "Ann Operator", email="ann@example.com")
    assert Author.of(user) == ANN
    assert Author.of("beat") == Author("beat", "beat@edgefleet.invalid")

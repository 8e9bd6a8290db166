"""The git host adapter's failures against the simulator's git host: every refusal and fault becomes a typed
error whose sentence names the cause, never carries the control plane's token, and leaves nothing half-created.
"""

import logging
from collections.abc import Iterator
from typing import Any

import pytest

from simulator.testing import Simulator
from sites.githost import GitHostAccessDenied, GitHostGroupMissing, GitHostRefused, GitHostUnavailable
from sites.githost.gitlab import GitLabHost
from tests.sites.githost.support import gitlab_host, unused_code

pytestmark = pytest.mark.integration


@pytest.fixture
def no_token_leaks(sim: Simulator, caplog: pytest.LogCaptureFixture) -> Iterator[list[str]]:
    """Every message and log line of the test, checked afterwards for the control plane's token."""
    caplog.set_level(logging.DEBUG)
    messages: list[str] = []
    yield messages
    logged = "\n".join(record.getMessage() for record in caplog.records)
    for text in [*messages, logged]:
        assert sim.gitlab_token not in text


@pytest.mark.parametrize(
    ("token", "error", "words"),
    [
        ({"expires_at": "2020-01-01"}, GitHostAccessDenied, ["401", "Token is expired", "FLEET_GITLAB_TOKEN"]),
        ({"revoked": True}, GitHostAccessDenied, ["401", "revoked"]),
        ({"scopes": ["read_api"]}, GitHostAccessDenied, ["403", "scope"]),
        ({"access_level": 20}, GitHostAccessDenied, ["403", "Owner role"]),
    ],
)
def test_a_refused_token_is_access_denied(
    sim: Simulator, token: dict[str, Any], error: type, words: list[str], no_token_leaks: list[str]
) -> None:
    host = gitlab_host(sim, token=sim.create_git_token(**token)["token"])
    with pytest.raises(error) as raised:
        host.ensure_project(unused_code())
    assert not raised.value.transient
    for word in words:
        assert word in raised.value.message
    no_token_leaks.append(raised.value.message)


def test_a_missing_group_is_named(sim: Simulator) -> None:
    with pytest.raises(GitHostGroupMissing, match="'no-such-group' does not exist"):
        gitlab_host(sim, group="no-such-group").ensure_project(unused_code())


@pytest.mark.parametrize(
    ("fault", "words", "retry_after"),
    [
        ({"kind": "api_error"}, ["failed (50", "after 1 retries"], None),
        ({"kind": "throttle", "seconds": 7}, ["rate-limiting", "7s"], 7.0),
        ({"kind": "offline"}, ["cannot reach"], None),
        ({"kind": "timeout", "seconds": 3}, ["did not answer within 1s"], None),
    ],
)
def test_an_unavailable_host_is_transient_and_nothing_is_half_created(
    sim: Simulator, fault: dict[str, Any], words: list[str], retry_after: float | None, no_token_leaks: list[str]
) -> None:
    code = unused_code()
    host = gitlab_host(sim, timeout=1.0)
    fault_id = sim.add_fault(site="githost", **fault)
    try:
        with pytest.raises(GitHostUnavailable) as raised:
            host.ensure_project(code)
    finally:
        sim.remove_fault(fault_id)
    assert raised.value.transient and raised.value.retry_after == retry_after
    for word in words:
        assert word in raised.value.message
    no_token_leaks.append(raised.value.message)
    # The host is back: ensure goes on from wherever the failure stopped it.
    assert host.ensure_project(code).path == f"{sim.git_group}/{code}"


def test_an_unreachable_host_is_unavailable() -> None:
    host = GitLabHost(url="https://127.0.0.1:9", token="glpat-x", group="fleet", timeout=2.0, max_retries=0)
    with pytest.raises(GitHostUnavailable, match="cannot reach the git host at 127.0.0.1:9"):
        host.find_project("TX-0412")


def test_a_code_gitlab_would_refuse_is_refused_before_any_call() -> None:
    host = GitLabHost(url="https://127.0.0.1:9", token="glpat-x", group="fleet")
    with pytest.raises(GitHostRefused, match="end in '.git'"):
        host.ensure_project("TX-1.git")


def test_the_token_is_not_in_the_adapters_repr() -> None:
    host = GitLabHost(url="https://gitlab.example.com", token="glpat-secret-value", group="fleet")
    assert "glpat-secret-value" not in repr(host) and "glpat-secret-value" not in str(vars(host).get("url"))

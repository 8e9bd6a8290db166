"""Messages for people: the errors the Kubernetes adapter really raises (a closed port, a server that
never answers, one that hangs up, HTTP 401/403/429/503, a malformed answer) become one sentence each
naming host:port and the cause, and the raw exception stays behind it for engineers."""

import datetime as dt
import json
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import urllib3

from sites import services
from sites.clusters import ClusterError, ClusterNotConfigured, ClusterRefused, ClusterUnavailable, SiteCluster
from sites.messages import Problem, clock, cluster_problem, endpoint
from sites.models import Cluster
from tests.factories import SiteFactory
from tests.support import free_port
from tests.support.http import JsonHandler, serving

pytestmark = pytest.mark.django_db

TOKEN = "s3cret-token"


class _Answers(JsonHandler):
    """Answers /version with the status named by the server's `status` (and a body that is not JSON for 299)."""

    def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
        status: int = self.server.status  # type: ignore[attr-defined]
        if status == 299:
            body, status = b"<html>a captive portal</html>", 200
        else:
            body = json.dumps({"kind": "Status", "code": status, "message": f"refused with {status}"}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        if status == 429:
            self.send_header("Retry-After", "3")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def answering() -> Iterator[Any]:
    with serving(_Answers) as server:
        yield server


@pytest.fixture
def silent() -> Iterator[tuple[int, socket.socket]]:
    """A port that accepts connections and never answers (and one that hangs up: see `hanging_up`)."""
    listener = socket.create_server(("127.0.0.1", 0))
    yield listener.getsockname()[1], listener
    listener.close()


def _error_from(api_url: str, settings: Any) -> ClusterError:
    settings.KUBE_TIMEOUT_SECONDS = 0.5
    site = SiteFactory()
    services.cluster_set_credentials(cluster=site.cluster, actor="t", source="test", api_url=api_url, token=TOKEN)
    with pytest.raises(ClusterError) as raised:
        SiteCluster.for_cluster(Cluster.objects.select_related("site").get(site=site)).version()
    return raised.value


def test_a_closed_port_reads_connection_refused_with_the_raw_error_behind(settings: Any) -> None:
    port = free_port()
    error = _error_from(f"http://127.0.0.1:{port}", settings)

    problem = cluster_problem(error, api_url=f"http://127.0.0.1:{port}")

    assert problem.what == f"cannot reach the cluster at 127.0.0.1:{port} (connection refused)"
    assert "MaxRetryError" not in problem.what
    assert "MaxRetryError: HTTPConnectionPool" in problem.detail and "Connection refused" in problem.detail


def test_a_server_that_never_answers_reads_no_answer_in_time(settings: Any, silent: tuple[int, Any]) -> None:
    port, _listener = silent
    error = _error_from(f"http://127.0.0.1:{port}", settings)

    assert cluster_problem(error, api_url=f"http://127.0.0.1:{port}").what == (
        f"cannot reach the cluster at 127.0.0.1:{port} (no answer in time)"
    )


def test_a_server_that_hangs_up_reads_dropped_without_an_answer(settings: Any, silent: tuple[int, Any]) -> None:
    port, listener = silent

    def hang_up() -> None:
        connection, _ = listener.accept()
        connection.recv(1024)
        connection.close()

    threading.Thread(target=hang_up, daemon=True).start()
    error = _error_from(f"http://127.0.0.1:{port}", settings)

    assert cluster_problem(error, api_url=f"http://127.0.0.1:{port}").what == (
        f"cannot reach the cluster at 127.0.0.1:{port} (the connection was dropped without an answer)"
    )


@pytest.mark.parametrize(
    ("status", "kind", "what"),
    [
        (401, ClusterRefused, "the cluster at {} refuses our credentials (HTTP 401)"),
        (403, ClusterRefused, "the cluster at {} forbids what we asked with our credentials (HTTP 403)"),
        (429, ClusterUnavailable, "the cluster at {} is throttling our requests (HTTP 429)"),
        (503, ClusterUnavailable, "the cluster at {} answers with server errors (HTTP 503)"),
        (299, ClusterUnavailable, "cannot reach the cluster at {} (it answered with something that is not the "
                                  "Kubernetes API)"),
    ],
)  # fmt: skip
def test_http_answers_read_as_what_the_server_said(
    settings: Any, answering: Any, status: int, kind: type, what: str
) -> None:
    answering.status = status
    url = f"http://127.0.0.1:{answering.server_address[1]}"
    error = _error_from(url, settings)

    problem = cluster_problem(error, api_url=url)

    assert isinstance(error, kind)
    assert problem.what == what.format(url[7:])
    assert problem.detail.startswith(type(error).__name__)
    assert TOKEN not in problem.detail and TOKEN not in problem.what  # the raw error carries no credential


def test_our_own_refusals_are_sentences_already_and_carry_no_since() -> None:
    refused = ClusterRefused("the stored credentials of site TX-1 are refused and were not used: ...; set them again")
    bare = ClusterNotConfigured("site TX-1 has no cluster endpoint or credentials")
    now = dt.datetime(2026, 5, 3, 14, 30, tzinfo=dt.UTC)

    assert cluster_problem(refused, api_url="").sentence(now, now) == str(refused)
    assert cluster_problem(bare, api_url="").sentence(now, now) == (
        "no cluster endpoint or credentials are recorded for this site"
    )


def test_a_name_that_does_not_resolve_says_so() -> None:
    # urllib3's own chain for a DNS failure (no lookup here: the test machine may have no resolver)
    lookup = socket.gaierror(-2, "Name or service not known")
    cause = urllib3.exceptions.NameResolutionError("k3s.tx-0412.example", None, lookup)  # type: ignore[arg-type]
    try:
        try:
            raise urllib3.exceptions.MaxRetryError(None, "/version", cause)  # type: ignore[arg-type]
        except urllib3.exceptions.MaxRetryError as exc:
            raise ClusterUnavailable(f"MaxRetryError: {exc}") from exc
    except ClusterUnavailable as error:
        problem = cluster_problem(error, api_url="https://k3s.tx-0412.example:6443")

    assert problem.what == "cannot reach the cluster at k3s.tx-0412.example:6443 (its name does not resolve)"


def test_the_sentence_says_since_when_in_the_control_planes_time_zone(settings: Any) -> None:
    settings.TIME_ZONE = "Europe/Paris"
    now = dt.datetime(2026, 5, 3, 14, 30, tzinfo=dt.UTC)
    problem = Problem("cannot reach the cluster at 10.2.3.4:6443 (connection refused)", "raw")

    assert problem.sentence(dt.datetime(2026, 5, 3, 12, 2, tzinfo=dt.UTC), now) == (
        "cannot reach the cluster at 10.2.3.4:6443 (connection refused) since 14:02"
    )
    assert clock(dt.datetime(2026, 4, 30, 22, 5, tzinfo=dt.UTC), now) == "May 1 00:05"
    assert clock(dt.datetime(2025, 12, 31, 8, 0, tzinfo=dt.UTC), now) == "2025-12-31 09:00"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://10.2.3.4:6443", "10.2.3.4:6443"),
        ("https://k3s.example", "k3s.example:443"),
        ("http://127.0.0.1:8700/sites/TX-0412", "127.0.0.1:8700"),
        ("https://[fd00::1]:6443", "[fd00::1]:6443"),
        ("", "(no address)"),
    ],
)
def test_the_endpoint_is_host_and_port(url: str, shown: str) -> None:
    assert endpoint(url) == shown

"""Messages for people: what went wrong talking to a site, as a sentence support staff can act on.

An adapter error arrives as a chain of exceptions (`ClusterUnavailable` from a urllib3 `MaxRetryError`
whose reason is a `NewConnectionError` wrapping `ConnectionRefusedError`, ...). Shown as it is, it reads
`MaxRetryError: HTTPSConnectionPool(host='10.2.3.4', port=6443): Max retries exceeded ...`. Here it
becomes "cannot reach the cluster at 10.2.3.4:6443 (connection refused) since 14:02", and the raw chain
is kept beside it (`Problem.detail`, stored as `Cluster.last_error_detail`) for engineers.

Pure: no database, no network; times are shown in the control plane's time zone (TIME_ZONE).
"""

import datetime as dt
import socket
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import urlsplit

import urllib3.exceptions
from django.utils import timezone

MAX_DETAIL = 2000


@dataclass(frozen=True)
class Problem:
    """What went wrong, for people (`what`) and for engineers (`detail`, the raw exception chain).

    `timed` says whether "since HH:MM" belongs after `what`: a connection that keeps failing has a since;
    a configuration we refuse to use is a standing fact whose sentence ends with what to do.
    """

    what: str
    detail: str
    timed: bool = True

    def sentence(self, since: dt.datetime | None, now: dt.datetime) -> str:
        if not self.timed or since is None:
            return self.what
        return f"{self.what} since {clock(since, now)}"


def clock(at: dt.datetime, now: dt.datetime) -> str:
    """`14:02` today, `May 3 14:02` another day this year, `2025-05-03 14:02` before, in TIME_ZONE."""
    local, today = timezone.localtime(at), timezone.localtime(now)
    if local.date() == today.date():
        return local.strftime("%H:%M")
    if local.year == today.year:
        return f"{local.strftime('%b')} {local.day} {local.strftime('%H:%M')}"
    return local.strftime("%Y-%m-%d %H:%M")


def endpoint(api_url: str) -> str:
    """`host:port` of a cluster's API URL (the scheme's default port when none is written)."""
    try:
        parts = urlsplit(api_url)
        host, port = parts.hostname, parts.port
    except ValueError:
        return api_url or "(no address)"
    if not host:
        return api_url or "(no address)"
    port = port or (443 if parts.scheme == "https" else 80)
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def cluster_problem(exc: BaseException, *, api_url: str) -> Problem:
    """The sentence for an adapter error from talking to the cluster at `api_url`."""
    # Here, not at the top: health and the admin read `clock` without loading the Kubernetes client.
    from sites.clusters import ClusterError, ClusterNotConfigured, ClusterRefused, ClusterUnavailable

    detail = raw_detail(exc)
    where = f"the cluster at {endpoint(api_url)}"
    if isinstance(exc, ClusterNotConfigured):
        return Problem("no cluster endpoint or credentials are recorded for this site", detail, timed=False)
    status = exc.status if isinstance(exc, ClusterError) else None
    if isinstance(exc, ClusterRefused):
        if status == 401:
            return Problem(f"{where} refuses our credentials (HTTP 401)", detail)
        if status == 403:
            return Problem(f"{where} forbids what we asked with our credentials (HTTP 403)", detail)
        if status is None:  # our own refusal of the stored credentials: already a sentence saying what to do
            return Problem(str(exc), detail, timed=False)
        return Problem(f"{where} refuses the request (HTTP {status})", detail)
    if isinstance(exc, ClusterUnavailable) and status:
        if status == 429:
            return Problem(f"{where} is throttling our requests (HTTP 429)", detail)
        return Problem(f"{where} answers with server errors (HTTP {status})", detail)
    return Problem(f"cannot reach {where} ({transport_reason(exc)})", detail)


def transport_reason(exc: BaseException) -> str:
    """Why a connection failed, in a few words, from the first cause in the chain that says so."""
    chain = list(_chain(exc))
    for cause in chain:
        if isinstance(cause, ssl.SSLCertVerificationError) or "CERTIFICATE_VERIFY_FAILED" in str(cause):
            return "its TLS certificate is not trusted"
    for cause in chain:
        text = str(cause).lower()
        if isinstance(cause, ConnectionRefusedError) or "connection refused" in text:
            return "connection refused"
        if isinstance(cause, socket.gaierror) or any(
            s in text for s in ("name or service not known", "nodename nor servname", "name resolution")
        ):
            return "its name does not resolve"
        if "no route to host" in text or "network is unreachable" in text:
            return "no route to the host"
        if isinstance(cause, urllib3.exceptions.ConnectTimeoutError):
            return "connection timed out"
        if isinstance(cause, urllib3.exceptions.ReadTimeoutError | TimeoutError) or "timed out" in text:
            return "no answer in time"
        if isinstance(cause, ssl.SSLError | urllib3.exceptions.SSLError):
            return "the TLS handshake failed"
        if isinstance(cause, ConnectionResetError | urllib3.exceptions.ProtocolError) or any(
            s in text for s in ("connection aborted", "remote end closed", "connection reset")
        ):
            return "the connection was dropped without an answer"
    if any("malformed" in str(cause) for cause in chain):
        return "it answered with something that is not the Kubernetes API"
    return "an error on the way: see the detail"


def raw_detail(exc: BaseException) -> str:
    """The exception chain as engineers read it, one `Type: message` per line, bounded."""
    return "\n".join(f"{type(e).__name__}: {e}" for e in _chain(exc))[:MAX_DETAIL]


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """The exception, its causes and contexts, and what urllib3 wraps (`reason`), each once."""
    seen: set[int] = set()
    pending: list[BaseException] = [exc]
    while pending and len(seen) < 12:
        current = pending.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        for nested in (
            current.__cause__,
            current.__context__,
            getattr(current, "reason", None),
            *(arg for arg in current.args if isinstance(arg, BaseException)),
        ):
            if isinstance(nested, BaseException):
                pending.append(nested)

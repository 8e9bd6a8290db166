"""The adapter's errors: client failures mapped to three types that workflow steps turn into outcomes:
`ClusterUnavailable` (transient: connection refused, timeout, 5xx, 429; retry later), `ClusterRefused`
(permanent: credentials refused, forbidden), `ClusterNotFound` (404); and `ClusterNotConfigured`."""

import yaml
from kubernetes.client.exceptions import ApiException


class ClusterError(Exception):
    """Base of the adapter's errors; `status` is the HTTP status when there was one."""

    def __init__(self, message: str, *, status: int | None = None, retry_after: float | None = None):
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


class ClusterUnavailable(ClusterError):
    """The site did not answer or answered with a transient error: try again later."""


class ClusterRefused(ClusterError):
    """The site refused our credentials or the action: retrying will not help."""


class ClusterNotFound(ClusterError):
    """The object asked for does not exist."""


class ClusterNotConfigured(ClusterError):
    """The site has no API endpoint or credentials recorded."""


def translate(exc: Exception) -> ClusterError:
    if isinstance(exc, ApiException):
        status = exc.status or 0
        reason = _status_message(exc)
        if status == 429 or status >= 500 or status == 0:
            retry_after = None
            if exc.headers and exc.headers.get("Retry-After", "").isdigit():
                retry_after = float(exc.headers["Retry-After"])
            return ClusterUnavailable(f"HTTP {status}: {reason}", status=status, retry_after=retry_after)
        if status == 404:
            return ClusterNotFound(f"not found: {reason}", status=status)
        if status in (401, 403):
            return ClusterRefused(f"HTTP {status}: {reason}", status=status)
        return ClusterRefused(f"HTTP {status}: {reason}", status=status)
    return ClusterUnavailable(f"{type(exc).__name__}: {exc}")


def _status_message(exc: ApiException) -> str:
    try:
        body = yaml.safe_load(exc.body) if exc.body else None
    except yaml.YAMLError:
        body = None
    if isinstance(body, dict) and body.get("message"):
        causes = [
            str(cause["message"])
            for cause in ((body.get("details") or {}).get("causes") or [])
            if isinstance(cause, dict) and cause.get("message")
        ]
        # A refused eviction says which disruption budget refused it only in its causes.
        return "; ".join([str(body["message"]), *causes])
    return str(exc.reason or "error")

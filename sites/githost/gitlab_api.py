"""Talking to GitLab through python-gitlab (`GitLabApi`): one client per host, TLS verified (against
FLEET_GIT_CA_FILE when set), a timeout on every call, python-gitlab's retries on connection errors and
5xx; a 429 is not slept on in the worker but becomes GitHostUnavailable with `retry_after`. Every failure
becomes a git host error with a sentence for people; the token is never logged nor in a message."""

import json
import threading
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import urlsplit

import gitlab
import requests
from gitlab.exceptions import GitlabError

from sites.githost.errors import GitHostAccessDenied, GitHostError, GitHostRefused, GitHostUnavailable

T = TypeVar("T")


class GitLabApi:
    """One GitLab server as edgefleet calls it: `call` an operation, or `or_none` for a lookup (404: None)."""

    def __init__(self, *, url: str, token: str, group_path: str, ca_file: str, timeout: float, max_retries: int):
        self.url = url
        self.group_path = group_path
        self.ca_file = ca_file
        self.timeout = timeout
        self.max_retries = max_retries
        self.host = urlsplit(url).netloc or url
        self.__token = token
        self._gl: gitlab.Gitlab | None = None
        self._lock = threading.Lock()
        self._local = threading.local()

    @property
    def opts(self) -> dict[str, Any]:
        """The options every python-gitlab call gets: its retries, and no sleeping on a 429."""
        return {"max_retries": self.max_retries, "obey_rate_limit": False}

    def client(self) -> gitlab.Gitlab:
        with self._lock:
            if self._gl is None:
                session = requests.Session()
                session.hooks["response"].append(self._remember)
                self._gl = gitlab.Gitlab(
                    self.url,
                    private_token=self.__token,
                    ssl_verify=self.ca_file or True,
                    timeout=self.timeout,
                    retry_transient_errors=True,
                    per_page=100,
                    session=session,
                )
            return self._gl

    def _remember(self, response: requests.Response, *args: Any, **kwargs: Any) -> None:
        if response.status_code == 429:
            self._local.retry_after = response.headers.get("Retry-After")

    def call(self, doing: str, operation: Callable[[], T]) -> T:
        self._local.retry_after = None
        try:
            return operation()
        except (GitlabError, requests.RequestException) as exc:
            raise self._failure(exc, doing) from exc

    def or_none(self, doing: str, operation: Callable[[], T]) -> T | None:
        """`operation`, or None when GitLab answers 404."""
        try:
            return self.call(doing, operation)
        except GitHostError as exc:
            cause = exc.__cause__
            if isinstance(cause, GitlabError) and cause.response_code == 404:
                return None
            raise

    def _failure(self, exc: Exception, doing: str) -> GitHostError:
        where = f"the git host at {self.host}"
        if isinstance(exc, requests.exceptions.SSLError):
            return GitHostRefused(
                f"cannot verify the certificate of {where} while trying to {doing}: set FLEET_GIT_CA_FILE to the "
                "CA that signed it (verification is never switched off)",
                detail=_scrub(str(exc)),
            )
        if isinstance(exc, requests.Timeout):
            return GitHostUnavailable(
                f"{where} did not answer within {self.timeout:g}s while edgefleet tried to {doing}",
                detail=_scrub(str(exc)),
            )
        if isinstance(exc, requests.RequestException):
            return GitHostUnavailable(
                f"cannot reach {where} to {doing}: {_reason(exc)}",
                detail=_scrub(str(exc)),
            )
        assert isinstance(exc, GitlabError)  # noqa: S101 - the only other type call catches
        code = exc.response_code or 0
        body = _body(exc)
        said = _said(body, exc)
        if code == 401:
            return GitHostAccessDenied(
                f"{where} refused edgefleet's token while it tried to {doing} (401: {said}); issue a new access "
                "token with the api scope and set FLEET_GITLAB_TOKEN",
                detail=said,
            )
        if code == 403:
            if body.get("error") == "insufficient_scope":
                hint = f"the token lacks the scope {body.get('scope') or 'api'!r}; issue one with the api scope"
            else:
                hint = f"the token's user needs the Owner role on the group {self.group_path}"
            return GitHostAccessDenied(f"{where} refused to let edgefleet {doing} (403: {said}); {hint}", detail=said)
        if code == 429:
            retry_after = _seconds(getattr(self._local, "retry_after", None))
            later = f"; try again in {retry_after:g}s" if retry_after else ""
            return GitHostUnavailable(
                f"{where} is rate-limiting edgefleet (429) while it tries to {doing}{later}",
                detail=said,
                retry_after=retry_after,
            )
        if code >= 500:
            return GitHostUnavailable(
                f"{where} failed ({code}) while edgefleet tried to {doing}, also after {self.max_retries} retries",
                detail=said,
            )
        return GitHostRefused(f"{where} refused to {doing} ({code}: {said})", detail=said)


def _body(exc: GitlabError) -> dict[str, Any]:
    raw = exc.response_body
    try:
        data = json.loads(raw) if raw else {}
    except (ValueError, TypeError):
        return {}
    return data if isinstance(data, dict) else {}


def _said(body: dict[str, Any], exc: GitlabError) -> str:
    """The host's own words, short: `message` (a string or per-field lists), else `error_description`."""
    message = body.get("message")
    if isinstance(message, dict):
        return "; ".join(f"{field} {', '.join(map(str, problems))}" for field, problems in message.items())[:300]
    if message:
        return str(message)[:300]
    if body.get("error_description"):
        return str(body["error_description"])[:300]
    said = exc.error_message
    if isinstance(said, bytes):
        said = said.decode(errors="replace")
    return (str(said).strip() or "no message")[:300]


def _reason(exc: Exception) -> str:
    text = str(exc)
    for needle, reason in (
        ("Connection refused", "connection refused"),
        ("Name or service not known", "the name does not resolve"),
        ("Temporary failure in name resolution", "the name does not resolve"),
        ("Connection reset", "the connection was reset"),
        ("RemoteDisconnected", "the connection was closed without an answer"),
        ("Connection aborted", "the connection was closed without an answer"),
    ):
        if needle in text:
            return reason
    return "the connection failed"


def _scrub(text: str) -> str:
    return text[:500]


def _seconds(value: Any) -> float | None:
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        return None
    return seconds if seconds >= 0 else None

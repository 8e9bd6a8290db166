"""Refusals as GitLab answers them: an HTTP status, GitLab's JSON body and headers (`HostError`), and the
bodies of its common answers (not found, unusable token, insufficient scope)."""

from typing import Any


class HostError(Exception):
    """A refusal as GitLab answers it: HTTP `status`, JSON `body`, extra `headers`."""

    def __init__(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None):
        super().__init__(f"{status}: {body}")
        self.status = status
        self.body = body
        self.headers = headers or {}


def message(status: int, text: str) -> HostError:
    return HostError(status, {"message": text})


def not_found(what: str) -> HostError:
    return message(404, f"404 {what} Not Found")


def invalid_token(description: str) -> HostError:
    return HostError(
        401,
        {"error": "invalid_token", "error_description": description},
        {
            "WWW-Authenticate": (
                f'Bearer realm="Protected by OAuth 2.0", error="invalid_token", error_description="{description}"'
            )
        },
    )


def insufficient_scope(wanted: tuple[str, ...]) -> HostError:
    return HostError(
        403,
        {
            "error": "insufficient_scope",
            "error_description": "The request requires higher privileges than provided by the access token.",
            "scope": " ".join(wanted),
        },
        {"WWW-Authenticate": 'Bearer realm="Protected by OAuth 2.0", error="insufficient_scope"'},
    )

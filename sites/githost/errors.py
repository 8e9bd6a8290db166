"""The git host adapter's errors: one small family, each with a sentence a support person understands
("the git host at gitlab.example.com refused edgefleet's token (401: Token is expired...): renew
FLEET_GITLAB_TOKEN") and the raw answer kept behind it (`detail`) for engineers. The messages never hold
a token.

A workflow maps them to outcomes in one place (STYLE.md, "Errors become outcomes in one place"):
`transient` errors are a Retry or Wait (`retry_after` seconds when the host said so), everything else
is a Fail whose message is shown as it is.
"""


class GitHostError(Exception):
    """Base of the adapter's errors. `message` is for people; `detail` is the host's raw answer."""

    transient = False

    def __init__(self, message: str, *, detail: str = "", retry_after: float | None = None):
        super().__init__(message)
        self.message = message
        self.detail = detail
        self.retry_after = retry_after


class GitHostUnavailable(GitHostError):
    """The git host did not answer, timed out, was busy (429) or failed (5xx) after the client's retries:
    try again later (after `retry_after` seconds when the host named it). Nothing was half-done."""

    transient = True


class GitHostAccessDenied(GitHostError):
    """The git host refused edgefleet's token (401: unknown, expired or revoked) or what it may do (403: a
    missing scope or role). Permanent until someone fixes the token or its role."""


class GitHostGroupMissing(GitHostError):
    """The configured group (FLEET_GITLAB_GROUP) does not exist, or the token cannot see it."""


class ProjectConflict(GitHostError):
    """A project of that path exists and is not edgefleet's (it has content edgefleet did not write, or
    it is archived): edgefleet refuses to take it over. A person has to decide."""


class ProjectMissing(GitHostError):
    """The site has no project on the git host (an operation that needs one, such as issuing a deploy
    token, came before the project was ensured)."""


class GitHostRefused(GitHostError):
    """Any other permanent refusal: an invalid request, a certificate that does not verify, an answer the
    adapter does not understand."""

"""The git adapter's errors: what a workflow step catches and turns into an outcome.

Two families reach callers: `RepoUnavailable` (transient: network, timeout, lock busy, push still
overtaken after the retries -> Retry) and `RepoError` (permanent: no such repository, credentials
refused, bad path or URL -> Fail). Their messages name the site and never contain a credential.
`CorruptClone` never leaves the package: a session that meets it re-creates the working clone.
"""


class RepoFailure(Exception):
    """Base of the adapter's errors. The message is safe to store and show: it holds no credential."""


class RepoUnavailable(RepoFailure):
    """Transient: the remote did not answer, timed out, hung up, the clone is busy, or the push kept being
    overtaken by other writers. Retry later."""


class RepoError(RepoFailure):
    """Permanent: the repository does not exist, the credentials were refused, or the request is invalid.
    Retrying will not help."""


class UnsafePath(RepoError, ValueError):
    """A path that is absolute, climbs out with `..`, or points into `.git`."""


class UnsafeUrl(RepoError, ValueError):
    """A repository URL the git policy refuses (sites.repo_urls): an unlisted host, a remote helper, a
    local path outside the allowed roots, credentials in the URL. Permanent: fix the site's repo_url."""


class CorruptClone(Exception):
    """Our working clone is damaged; the session re-creates it and starts over (never leaves the package)."""

"""Git: where site repositories live, the git servers and the git host (`local` or `gitlab`) with their
credentials and timeouts, each checked at start: a wrong value refuses the start with its name."""

import re
from pathlib import Path
from urllib.parse import urlsplit

from django.core.exceptions import ImproperlyConfigured

from fleet.settings.base import DATA_DIR, PRODUCTION, env

# --- Edge and adapters ----------------------------------------------------------------------------
REPO_ROOT = Path(env.str("FLEET_REPO_ROOT", default=str(DATA_DIR / "repos")))
REPO_CACHE_DIR = Path(env.str("FLEET_REPO_CACHE_DIR", default=str(DATA_DIR / "repo-cache")))
# Git servers (sites/repos/); local bare repositories need none of this. An SSH deploy key (with the
# known_hosts file that pins host keys on first contact), or an HTTPS token sent as a Basic-auth header
# from the environment, never in a URL or on a command line. Timeouts bound every git command and the
# wait for a site's working clone (held by another worker).
FLEET_GIT_SSH_KEY_FILE = env.str("FLEET_GIT_SSH_KEY_FILE", default="")
FLEET_GIT_KNOWN_HOSTS_FILE = env.str("FLEET_GIT_KNOWN_HOSTS_FILE", default=str(DATA_DIR / "ssh_known_hosts"))
FLEET_GIT_TOKEN = env.str("FLEET_GIT_TOKEN", default="")
FLEET_GIT_USERNAME = env.str("FLEET_GIT_USERNAME", default="x-access-token")
# The git host that holds the sites' repositories (sites/githost/): `local` (bare repositories under
# FLEET_REPO_ROOT, the embedded default) or `gitlab` (one project per site in FLEET_GITLAB_GROUP, through
# python-gitlab). FLEET_GITLAB_TOKEN may be given as `fernet:<token>` (manage.py encrypt_secret), encrypted
# with FLEET_SECRET_KEYS; it is never logged. FLEET_GIT_CA_FILE: a CA bundle that git and python-gitlab
# trust for the git host (a private CA, the simulator's), never a way to switch verification off.
FLEET_GIT_HOST = env.str("FLEET_GIT_HOST", default="local").strip().lower()
FLEET_GITLAB_URL = env.str("FLEET_GITLAB_URL", default="").strip().rstrip("/")
FLEET_GITLAB_TOKEN = env.str("FLEET_GITLAB_TOKEN", default="").strip()
FLEET_GITLAB_GROUP = env.str("FLEET_GITLAB_GROUP", default="").strip().strip("/")
FLEET_GITLAB_TIMEOUT = env.float("FLEET_GITLAB_TIMEOUT", default=10.0)
FLEET_GITLAB_MAX_RETRIES = env.int("FLEET_GITLAB_MAX_RETRIES", default=2)
FLEET_GITLAB_DEPLOY_TOKEN_DAYS = env.int("FLEET_GITLAB_DEPLOY_TOKEN_DAYS", default=365)
FLEET_GIT_CA_FILE = env.str("FLEET_GIT_CA_FILE", default="").strip()
_gitlab_netloc = ""
git_host_problems = []
if FLEET_GIT_HOST not in ("local", "gitlab"):
    git_host_problems.append(f"FLEET_GIT_HOST must be local or gitlab, not {FLEET_GIT_HOST!r}")
if FLEET_GIT_HOST == "gitlab":
    _gitlab_url = urlsplit(FLEET_GITLAB_URL)
    _gitlab_netloc = (_gitlab_url.netloc or "").lower()
    if _gitlab_url.scheme not in ("https", "http") or not _gitlab_url.hostname or "@" in _gitlab_netloc:
        git_host_problems.append("FLEET_GITLAB_URL must be the git host's https:// address (no user name)")
    elif _gitlab_url.scheme == "http" and (PRODUCTION or _gitlab_url.hostname not in ("127.0.0.1", "localhost", "::1")):
        git_host_problems.append("FLEET_GITLAB_URL must use https:// (plain http only to this machine, in development)")
    if not FLEET_GITLAB_TOKEN:
        git_host_problems.append("FLEET_GIT_HOST is gitlab but FLEET_GITLAB_TOKEN is not set")
    if not FLEET_GITLAB_GROUP:
        git_host_problems.append("FLEET_GIT_HOST is gitlab but FLEET_GITLAB_GROUP is not set")
if FLEET_GIT_CA_FILE and not Path(FLEET_GIT_CA_FILE).is_file():
    git_host_problems.append(f"FLEET_GIT_CA_FILE {FLEET_GIT_CA_FILE!r} is not a file")
if git_host_problems:
    raise ImproperlyConfigured("refusing to start: " + "; ".join(git_host_problems))
# Where site repositories may live (sites/repo_urls.py): the git servers a repo_url may name (host or
# host:port; a bare host means the scheme's default port), the one server the token is sent to (default:
# the first listed), and, outside production only, the directories local bare repositories may live in
# (FLEET_REPO_ROOT always counts). Checked when a repo_url is written and again before every git call.
# With FLEET_GIT_HOST=gitlab the GitLab server is always allowed and receives the token unless told otherwise,
# and the token defaults to FLEET_GITLAB_TOKEN (its `api` scope includes git over HTTPS).
FLEET_GIT_HOSTS = [entry.strip().lower() for entry in env.list("FLEET_GIT_HOSTS", default=[]) if entry.strip()]
if _gitlab_netloc and _gitlab_netloc not in FLEET_GIT_HOSTS:
    FLEET_GIT_HOSTS.append(_gitlab_netloc)
_default_token_host = _gitlab_netloc or (FLEET_GIT_HOSTS[0] if FLEET_GIT_HOSTS else "")
FLEET_GIT_TOKEN_HOST = env.str("FLEET_GIT_TOKEN_HOST", default=_default_token_host)
FLEET_GIT_TOKEN_HOST = FLEET_GIT_TOKEN_HOST.strip().lower()
if FLEET_GIT_HOST == "gitlab" and not FLEET_GIT_TOKEN:
    FLEET_GIT_TOKEN = FLEET_GITLAB_TOKEN
FLEET_GIT_LOCAL_ROOTS = [Path(root).resolve() for root in env.list("FLEET_GIT_LOCAL_ROOTS", default=[str(DATA_DIR)])]
_GIT_LABEL = r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?"
_GIT_HOST_RE = re.compile(rf"^(\[[0-9a-f:.]+\]|{_GIT_LABEL}(\.{_GIT_LABEL})*)(:[0-9]{{1,5}})?$")
git_problems = [
    f"FLEET_GIT_HOSTS entry {entry!r} is not host or host:port"
    for entry in FLEET_GIT_HOSTS
    if not _GIT_HOST_RE.match(entry)
]
if FLEET_GIT_TOKEN_HOST and FLEET_GIT_TOKEN_HOST not in FLEET_GIT_HOSTS:
    git_problems.append(f"FLEET_GIT_TOKEN_HOST {FLEET_GIT_TOKEN_HOST!r} is not one of FLEET_GIT_HOSTS")
if FLEET_GIT_TOKEN and not FLEET_GIT_TOKEN_HOST:
    git_problems.append("FLEET_GIT_TOKEN is set but no host may receive it: set FLEET_GIT_HOSTS")
if PRODUCTION and env.list("FLEET_GIT_LOCAL_ROOTS", default=[]):
    git_problems.append("FLEET_GIT_LOCAL_ROOTS is set, but production never uses local repositories")
if git_problems:
    raise ImproperlyConfigured("refusing to start: " + "; ".join(git_problems))
FLEET_GIT_TIMEOUT = env.float("FLEET_GIT_TIMEOUT", default=30.0)
FLEET_GIT_LOCK_TIMEOUT = env.float("FLEET_GIT_LOCK_TIMEOUT", default=30.0)

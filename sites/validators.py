"""Validation of the values a client can send about a site or node. Each raises Django's
ValidationError with a message that names the problem; the API shows it against the field.
Cluster credentials (kubeconfigs) are checked by sites.kubeconfig, on write and again at use."""

import re
import zoneinfo
from typing import Any

from django.core.exceptions import ValidationError

from sites.githost.paths import path_problem
from sites.repo_urls import GitPolicy, RepoUrlRefused

SITE_CODE_RE = re.compile(r"^[A-Z]{2,3}-[0-9]{3,6}$")
MAC_RE = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
# Kubernetes label syntax: optional DNS-subdomain prefix, then a name of at most 63 characters.
_LABEL_NAME = r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?"
LABEL_KEY_RE = re.compile(rf"^([a-z0-9]([-a-z0-9.]{{0,251}}[a-z0-9])?/)?{_LABEL_NAME}$")
LABEL_VALUE_RE = re.compile(rf"^({_LABEL_NAME})?$")
HOSTNAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


def validate_site_code(value: str) -> None:
    """Our pattern, and GitLab's rules for a project path, since the code names the site's project
    (`<group>/<code>`): a code the git host would refuse must never be accepted here."""
    if not SITE_CODE_RE.match(value):
        raise ValidationError(f"{value!r} is not a site code: expected two or three capitals, a dash, digits (TX-0412)")
    problem = path_problem(value)
    if problem:
        raise ValidationError(f"{value!r} cannot name the site's project on the git host: {problem}")


def validate_timezone(value: str) -> None:
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
        raise ValidationError(f"{value!r} is not an IANA time zone (e.g. America/Chicago)") from exc


def normalize_mac(value: str) -> str:
    """Lower-case, colon-separated; accepts dashes or no separators. Raises on anything else."""
    raw = re.sub(r"[-:.]", "", value.strip().lower())
    if not re.fullmatch(r"[0-9a-f]{12}", raw):
        raise ValidationError(f"{value!r} is not a MAC address (six hex pairs, e.g. 52:54:00:12:34:56)")
    return ":".join(raw[i : i + 2] for i in range(0, 12, 2))


def validate_hostname(value: str) -> None:
    if not HOSTNAME_RE.match(value):
        raise ValidationError(f"{value!r} is not a valid hostname (lower-case letters, digits and dashes, max 63)")


def validate_labels(value: Any) -> None:
    if not isinstance(value, dict):
        raise ValidationError("labels must be an object of key: value strings")
    for key, label in value.items():
        if not isinstance(key, str) or not LABEL_KEY_RE.match(key):
            raise ValidationError(f"label key {key!r} is not a valid Kubernetes label key")
        if not isinstance(label, str) or not LABEL_VALUE_RE.match(label):
            raise ValidationError(f"label {key!r} has an invalid value {label!r} (max 63 alphanumerics, -_.)")


def validate_repo_url(value: Any) -> str:
    """A site's `repo_url` in canonical form ("" stays ""), or ValidationError saying why git must not be
    pointed there: an unlisted host, a remote helper such as `ext::`, a local path outside the allowed
    roots, credentials in the URL (the rules and settings are in sites.repo_urls)."""
    if value == "":
        return ""
    try:
        return GitPolicy.from_settings().check(value).url
    except RepoUrlRefused as exc:
        raise ValidationError(str(exc)) from exc

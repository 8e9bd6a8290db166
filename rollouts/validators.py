"""Validation of the values a client can send about applications, releases and plans.

Each function raises Django's ValidationError (model validators) or fleet.errors.Invalid (services)
with a message that names the problem; the API shows it against the field.
"""

import re
from typing import Any

from django.core.exceptions import ValidationError

DNS_LABEL_RE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
KIND_RE = re.compile(r"^[A-Z][A-Za-z0-9]{0,62}$")


def validate_dns_label(value: str) -> None:
    if not isinstance(value, str) or not DNS_LABEL_RE.match(value):
        raise ValidationError(
            f"{value!r} is not a DNS label (lower-case letters, digits and dashes, at most 63, e.g. pos-api)"
        )


def validate_namespace_list(value: Any) -> None:
    if not isinstance(value, list):
        raise ValidationError("must be a list of namespace names")
    for item in value:
        validate_dns_label(item)
    if len(set(value)) != len(value):
        raise ValidationError("lists a namespace twice")


def validate_kind_list(value: Any) -> None:
    if not isinstance(value, list) or not all(isinstance(k, str) and KIND_RE.match(k) for k in value):
        raise ValidationError('must be a list of Kubernetes kinds, e.g. ["ClusterRole", "ClusterRoleBinding"]')


def validate_json_object(value: Any) -> None:
    if not isinstance(value, dict):
        raise ValidationError("must be a JSON object")


# An OCI image reference pinned to a tag or a digest: [registry[:port]/]path[:tag][@sha256:<64 hex>].
IMAGE_RE = re.compile(
    r"^(?:[a-zA-Z0-9](?:[-a-zA-Z0-9.]*[a-zA-Z0-9])?(?::[0-9]{1,5})?/)?"
    r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*"
    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?"
    r"(?:@sha256:[a-f0-9]{64})?$"
)
MAX_IMAGE_LENGTH = 500


def validate_image_reference(value: str) -> None:
    """A container image that names its version: `registry.example.com/team/pos-restore:3.2` or `…@sha256:…`.

    An image without a tag or digest would run whatever `latest` is on the day of a restore."""
    if not isinstance(value, str) or len(value) > MAX_IMAGE_LENGTH or not IMAGE_RE.match(value):
        raise ValidationError(
            f"{str(value)[:100]!r} is not an image reference (e.g. registry.example.com/pos/restore:3.2)"
        )
    last = value.rsplit("/", 1)[-1]
    if ":" not in last and "@" not in value:
        raise ValidationError(f"{value!r} names no tag or digest; pin the restore image (e.g. {value}:1.0)")

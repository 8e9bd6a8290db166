"""Clusters: the endpoint and credentials of a site's K3s cluster, and what joining machines are told."""

import json
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import transaction

from fleet.audit.choices import Source
from fleet.audit.services import Actor, audit_record
from fleet.errors import Invalid
from sites import crypto, health_records
from sites import kubeconfig as kubeconfig_parser
from sites.choices import ClusterReachability
from sites.models import Cluster


def cluster_set_credentials(
    *,
    cluster: Cluster,
    actor: Actor,
    source: Source,
    api_url: str | None = None,
    kubeconfig: str | None = None,
    token: str | None = None,
    ca_data: str | None = None,
    insecure_skip_tls_verify: bool = False,
) -> Cluster:
    """Store a cluster's endpoint and credentials, encrypted: a kubeconfig, or api_url + token (with
    ca_data and, outside production, insecure_skip_tls_verify).

    Both forms go through `sites.kubeconfig`, which accepts inline data only: a kubeconfig that would run
    a command, read a file on the workers or redirect the connection is refused with a 400 naming the
    field, before anything is written. The adapter parses the stored value again before each use.
    """
    if kubeconfig and token:
        raise Invalid("give either a kubeconfig or a token, not both", field="kubeconfig")
    try:
        if kubeconfig:
            for name, value in (("ca_data", ca_data), ("insecure_skip_tls_verify", insecure_skip_tls_verify)):
                if value:
                    raise Invalid(
                        f"{name} goes with a token, not a kubeconfig (it carries its CA as certificate-authority-data)",
                        field=name,
                    )
            parsed = kubeconfig_parser.parse_kubeconfig(kubeconfig, production=settings.PRODUCTION)
            if api_url and (not isinstance(api_url, str) or api_url.rstrip("/") != parsed.server):
                raise Invalid(
                    f"api_url {api_url!r} is not the kubeconfig's server {parsed.server!r}; give one of them",
                    field="api_url",
                )
            secret: dict[str, Any] = {"kubeconfig": kubeconfig}
        elif token:
            if not api_url:
                raise Invalid("api_url is required with a token", field="api_url")
            parsed = kubeconfig_parser.parse_token(
                api_url=api_url,
                token=token,
                ca_data=ca_data,
                insecure_skip_tls_verify=insecure_skip_tls_verify,
                production=settings.PRODUCTION,
            )
            secret = {"token": token, "ca_data": ca_data or None, "insecure_skip_tls_verify": insecure_skip_tls_verify}
        else:
            raise Invalid("give a kubeconfig, or an api_url and a token", field="kubeconfig")
    except kubeconfig_parser.CredentialsInvalid as exc:
        raise Invalid(exc.message, field=exc.field) from exc
    api_url = parsed.server
    with transaction.atomic():
        cluster = Cluster.objects.select_for_update().get(pk=cluster.pk)
        if cluster.api_url == api_url and _stored_secret(cluster) == secret:
            return cluster  # unchanged: no write, no audit event, so imports stay idempotent
        cluster.api_url = api_url
        cluster.credentials_encrypted = crypto.encrypt(json.dumps(secret))
        cluster.reachability = ClusterReachability.UNKNOWN
        cluster.save()
        health_records.site_health_refresh(site=cluster.site_id)  # not probed with these credentials yet
        # The payload says what kind of credential was set, never the credential.
        audit_record(
            actor=actor,
            verb="set_credentials",
            obj=cluster,
            source=source,
            payload={"api_url": api_url, "kind": parsed.kind},
        )
    return cluster


def _stored_secret(cluster: Cluster) -> dict[str, Any] | None:
    """What is stored now, or None when it cannot be read (then anything given replaces it)."""
    try:
        return cluster.credentials()
    except (ImproperlyConfigured, ValueError):
        return None


def cluster_set_join_config(
    *, cluster: Cluster, actor: Actor, source: Source, server_url: str | None = None, token: str | None = None
) -> Cluster:
    """Set what registering machines of the site are told to join: the K3s server URL and join token.

    Either may be given alone; the token is encrypted at rest and never shown again. Not audited when
    nothing changes, so an import can call this every time.
    """
    if server_url is None and token is None:
        raise Invalid("give join_server_url, join_token or both", field="join_server_url")
    if server_url is not None and not server_url.startswith(("http://", "https://")):
        raise Invalid(f"{server_url!r} is not an http(s) URL", field="join_server_url")
    if token is not None and not token.strip():
        raise Invalid("join_token cannot be blank", field="join_token")
    with transaction.atomic():
        cluster = Cluster.objects.select_for_update().get(pk=cluster.pk)
        url_changed = server_url is not None and server_url != cluster.join_server_url
        token_changed = token is not None and token != cluster.join_token()
        if not url_changed and not token_changed:
            return cluster
        if url_changed:
            cluster.join_server_url = server_url or ""
        if token_changed:
            cluster.join_token_encrypted = crypto.encrypt(token or "")
        cluster.save(update_fields=["join_server_url", "join_token_encrypted", "updated_at"])
        audit_record(
            actor=actor,
            verb="set_join_config",
            obj=cluster,
            source=source,
            payload={"join_server_url": cluster.join_server_url, "token_changed": token_changed},
        )
    return cluster


def clusters_rotate_keys() -> int:
    """Re-encrypt every stored credential under the first Fernet key. Returns how many were rewritten."""
    count = 0
    secrets = Cluster.objects.exclude(credentials_encrypted="", join_token_encrypted="")
    for cluster in secrets.only("pk", "credentials_encrypted", "join_token_encrypted").iterator():
        Cluster.objects.filter(pk=cluster.pk).update(
            credentials_encrypted=_rotated(cluster.credentials_encrypted),
            join_token_encrypted=_rotated(cluster.join_token_encrypted),
        )
        count += 1
    return count


def _rotated(token: str) -> str:
    return crypto.rotate(token) if token else ""

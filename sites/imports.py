"""Importing a fleet description (the simulator's fleet.json) into the inventory, idempotently.

Format: `{"sites": [{"code", "name", "region", "timezone", "api_url", "token", "repo_url",
"nodes": [{"serial", "hostname", "role", "mac"}]}]}`. A site may instead carry a `kubeconfig` (the
text); when a `kubeconfigs/<code>.yaml` file stands beside the fleet file it is used. Credentials are
checked by `services.cluster_set_credentials` (inline data only, see sites.kubeconfig). Machines listed
are running already, so new nodes are adopted as `active`; existing nodes keep their state.

A site may also carry `k3s_server_url` and `k3s_token`: what its registering machines are told to join.
Without them the join URL defaults to the cluster's api_url and a random join token is generated once
(kept on later imports), so an imported simulated fleet can register new machines end to end.
"""

import json
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.db import transaction

from fleet.audit.choices import Source
from fleet.audit.services import Actor
from fleet.errors import Invalid
from sites import services
from sites.choices import NodeState, SiteState
from sites.models import Cluster, Node, Site


@dataclass
class ImportSummary:
    sites_created: int = 0
    sites_updated: int = 0
    sites_unchanged: int = 0
    nodes_created: int = 0
    nodes_unchanged: int = 0
    credentials_set: int = 0
    join_configs_set: int = 0
    codes: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        return (
            f"sites: {self.sites_created} created, {self.sites_updated} updated, {self.sites_unchanged} unchanged; "
            f"nodes: {self.nodes_created} created, {self.nodes_unchanged} unchanged; "
            f"credentials set for {self.credentials_set} clusters; join config set for {self.join_configs_set}"
        )


def fleet_import_file(
    *, path: Path, actor: Actor, source: Source = Source.COMMAND, new_site_state: str = SiteState.ACTIVE
) -> ImportSummary:
    """Read and import a fleet file; raise Invalid if it cannot be read or parsed."""
    try:
        data = json.loads(path.read_text())
    except OSError as exc:
        raise Invalid(f"cannot read {path}: {exc.strerror}") from exc
    except json.JSONDecodeError as exc:
        raise Invalid(f"{path} is not JSON: {exc}") from exc
    return fleet_import(
        data=data,
        actor=actor,
        source=source,
        kubeconfig_dir=path.parent / "kubeconfigs",
        new_site_state=new_site_state,
    )


def fleet_import(
    *,
    data: Any,
    actor: Actor,
    source: Source = Source.COMMAND,
    kubeconfig_dir: Path | None = None,
    new_site_state: str = SiteState.ACTIVE,
) -> ImportSummary:
    """Create or update the sites, clusters and nodes `data` lists, in one transaction: all or nothing.

    New sites start `new_site_state` (`active`: they run already; `planned` when they are onboarded next,
    `fleet_import --onboard`); existing sites keep theirs."""
    if not isinstance(data, dict) or not isinstance(data.get("sites"), list):
        raise Invalid('a fleet file is an object with a list "sites"')
    summary = ImportSummary()
    with transaction.atomic():
        for index, entry in enumerate(data["sites"]):
            try:
                _import_site(
                    entry,
                    actor=actor,
                    source=source,
                    kubeconfig_dir=kubeconfig_dir,
                    summary=summary,
                    new_site_state=new_site_state,
                )
            except Invalid as exc:
                raise Invalid(f"sites[{index}]: {exc.message}", errors=exc.errors) from exc
    return summary


def _import_site(
    entry: Any,
    *,
    actor: Actor,
    source: Source,
    kubeconfig_dir: Path | None,
    summary: ImportSummary,
    new_site_state: str,
) -> None:
    if not isinstance(entry, dict) or not isinstance(entry.get("code"), str):
        raise Invalid("each site needs a string code")
    code = entry["code"]
    wanted = {key: entry[key] for key in ("name", "region", "timezone", "repo_url", "labels") if key in entry}
    site = Site.objects.filter(code=code).first()
    if site is None:
        site = services.site_create(actor=actor, source=source, code=code, state=new_site_state, **wanted)
        summary.sites_created += 1
    else:
        before = site.updated_at
        site = services.site_update(site=site, actor=actor, source=source, **wanted)
        if site.updated_at != before:
            summary.sites_updated += 1
        else:
            summary.sites_unchanged += 1
    summary.codes.append(code)
    if _import_credentials(site, entry, actor=actor, source=source, kubeconfig_dir=kubeconfig_dir):
        summary.credentials_set += 1
    if _import_join_config(site, entry, actor=actor, source=source):
        summary.join_configs_set += 1
    for node_entry in entry.get("nodes") or []:
        _import_node(site, node_entry, actor=actor, source=source, summary=summary)


def _import_credentials(
    site: Site, entry: dict[str, Any], *, actor: Actor, source: Source, kubeconfig_dir: Path | None
) -> bool:
    kubeconfig = entry.get("kubeconfig")
    if kubeconfig is None and kubeconfig_dir is not None and (kubeconfig_dir / f"{site.code}.yaml").is_file():
        kubeconfig = (kubeconfig_dir / f"{site.code}.yaml").read_text()
    if kubeconfig:
        # The kubeconfig names the server the client talks to; the entry's api_url is not used beside it.
        wanted: dict[str, Any] = {"kubeconfig": kubeconfig}
    elif entry.get("token"):
        wanted = {
            "api_url": entry.get("api_url"),
            "token": entry["token"],
            # The simulator's fleet.json names the CA certificate_authority_data, after the kubeconfig field.
            "ca_data": entry.get("ca_data") or entry.get("certificate_authority_data"),
            "insecure_skip_tls_verify": bool(entry.get("insecure_skip_tls_verify", False)),
        }
    else:
        return False
    before = site.cluster.updated_at
    cluster = services.cluster_set_credentials(cluster=site.cluster, actor=actor, source=source, **wanted)
    return cluster.updated_at != before


def _import_join_config(site: Site, entry: dict[str, Any], *, actor: Actor, source: Source) -> bool:
    """Set the K3s join URL and token the entry gives, or default them; True when something changed."""
    cluster = Cluster.objects.get(pk=site.cluster.pk)
    server_url = entry.get("k3s_server_url") or cluster.join_server_url or cluster.api_url or None
    token = entry.get("k3s_token")
    if not isinstance(server_url, str | None) or not isinstance(token, str | None):
        raise Invalid(f"site {site.code}: k3s_server_url and k3s_token must be strings", field="k3s_token")
    if token is None and not cluster.join_token_encrypted:
        token = secrets.token_hex(32)  # like the K3s server's own generated token: random, fixed once set
    if server_url is None and token is None:
        return False
    if server_url is None and not cluster.join_server_url:
        return False  # no URL to join yet (no api_url either); a later import with credentials sets both
    before = cluster.updated_at
    try:
        cluster = services.cluster_set_join_config(
            cluster=cluster, actor=actor, source=source, server_url=server_url, token=token
        )
    except Invalid as exc:
        raise Invalid(f"site {site.code}: {exc.message}", errors=exc.errors) from exc
    return cluster.updated_at != before


def _import_node(site: Site, entry: Any, *, actor: Actor, source: Source, summary: ImportSummary) -> None:
    if not isinstance(entry, dict) or not isinstance(entry.get("serial"), str):
        raise Invalid(f"site {site.code}: each node needs a string serial")
    node = Node.objects.filter(serial=entry["serial"]).select_related("site").first()
    if node is not None:
        if node.site_id != site.pk:
            raise Invalid(f"node {node.serial} belongs to site {node.site.code}, not {site.code}", field="serial")
        summary.nodes_unchanged += 1
        return
    services.node_create(
        actor=actor,
        source=source,
        serial=entry["serial"],
        site=site,
        hostname=entry.get("hostname", ""),
        mac=entry.get("mac", ""),
        role=entry.get("role", "agent"),
        hardware_model=entry.get("hardware_model", ""),
        state=NodeState.ACTIVE,
    )
    summary.nodes_created += 1

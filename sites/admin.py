"""Admin pages for support staff: sites with their nodes and cluster, nodes, clusters.

Every save and action goes through sites.services (see fleet.admin_forms), so it is validated and
audited exactly as through the API. Cluster credentials are write-only here too.
"""

import datetime as dt
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import Count, Q, QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html

from fleet.admin_display import badge
from fleet.admin_forms import ServiceAdminMixin, ServiceForm
from fleet.audit.choices import Source
from fleet.errors import FleetError
from fleet.workflows import runs_of
from sites import devices, lifecycle, services
from sites.admin_devices import NodeCredentialInline, issue_bootstrap_tokens, issue_site_wide_bootstrap_tokens
from sites.admin_health import health_badge
from sites.admin_lifecycle import SiteLifecycleAdminMixin
from sites.admin_versions import K3sVersionFilter, k3s_version_cell
from sites.choices import NODE_MANUAL_TRANSITIONS, NodeState, SiteState
from sites.models import Cluster, Node, Site

# --- filters ----------------------------------------------------------------------------------------


class LastSeenFilter(admin.SimpleListFilter):
    """How long ago a site or node was last heard from."""

    title = "last seen"
    parameter_name = "seen"
    field = "last_seen_at"
    options = (("5m", "within 5 minutes"), ("1h", "within an hour"), ("stale", "over an hour ago"), ("never", "never"))

    def lookups(self, request: HttpRequest, model_admin: Any) -> Any:
        return self.options

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        now = timezone.now()
        value = self.value()
        if value == "5m":
            return queryset.filter(**{f"{self.field}__gte": now - dt.timedelta(minutes=5)})
        if value == "1h":
            return queryset.filter(**{f"{self.field}__gte": now - dt.timedelta(hours=1)})
        if value == "stale":
            return queryset.filter(**{f"{self.field}__lt": now - dt.timedelta(hours=1)})
        if value == "never":
            return queryset.filter(**{f"{self.field}__isnull": True})
        return queryset


class HeartbeatFilter(LastSeenFilter):
    title = "last heartbeat"
    parameter_name = "heartbeat"
    field = "last_heartbeat_at"


class LabelFilter(admin.SimpleListFilter):
    """Filter by one `key=value` label; the choices are the pairs in use (bounded to keep the page fast)."""

    title = "label"
    parameter_name = "label"

    def lookups(self, request: HttpRequest, model_admin: Any) -> Any:
        pairs: set[tuple[str, str]] = set()
        for labels in Site.objects.exclude(labels={}).values_list("labels", flat=True)[:2000]:
            pairs.update((k, v) for k, v in labels.items())
        return [(f"{k}={v}", f"{k}={v}") for k, v in sorted(pairs)[:50]]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        selected = self.value()
        if not selected or "=" not in selected:
            return queryset
        key, value = selected.split("=", 1)
        prefix = "site__labels" if queryset.model is Node else "labels"
        return queryset.filter(**{f"{prefix}__{key}": value})


# --- sites ------------------------------------------------------------------------------------------
def _errors_to_form(form: forms.Form, exc: FleetError) -> None:
    """A service's per-field refusals shown next to the confirmation form's fields."""
    for field, errors in exc.errors.items():
        if field in form.fields:
            form.add_error(field, errors)


class SiteForm(ServiceForm):
    reason = forms.CharField(required=False, help_text="why the state changes (kept in the audit log)")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk is not None and "state" in self.fields:
            self.fields[
                "state"
            ].help_text = "decommissioning is the Decommission button above (reason, code to confirm)"

    class Meta:
        model = Site
        fields = ["code", *services.SITE_FIELDS, "state"]

    def apply(self, actor: Any) -> Site:
        data = {f: self.cleaned_data[f] for f in services.SITE_FIELDS if f in self.cleaned_data}
        if self.instance.pk is None:
            return services.site_create(
                actor=actor,
                source=Source.ADMIN,
                code=self.cleaned_data["code"],
                state=self.cleaned_data["state"],
                **data,
            )
        with transaction.atomic():  # a refused state change leaves the other fields unchanged too
            site = services.site_update(site=self.instance, actor=actor, source=Source.ADMIN, **data)
            if self.cleaned_data["state"] != site.state:
                site = services.site_set_state(
                    site=site,
                    to=self.cleaned_data["state"],
                    actor=actor,
                    source=Source.ADMIN,
                    reason=self.cleaned_data.get("reason", ""),
                )
        return site


class NodeInline(admin.TabularInline):
    model = Node
    fields = ("hostname", "serial", "role", "state_badge", "health_column", "mac", "hardware_model", "last_seen_at")
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="state")
    def state_badge(self, node: Node) -> str:
        return badge(node.state)

    @admin.display(description="health")
    def health_column(self, node: Node) -> str:
        return health_badge(node.health, node.health_since, node.health_reason)


class ClusterInline(admin.StackedInline):
    model = Cluster
    fields = (
        "api_url", "reachability", "k3s_version", "last_contact_at", "last_probe_at", "last_error", "failing_since",
        "last_error_detail",
    )  # fmt: skip
    readonly_fields = fields
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Site)
class SiteAdmin(SiteLifecycleAdminMixin, ServiceAdminMixin, admin.ModelAdmin):
    form = SiteForm
    list_display = [
        "code",
        "name",
        "region",
        "timezone",
        "state_badge",
        "health_column",
        "health_reason",
        "cluster_badge",
        "k3s_version",
        "nodes_summary",
        "last_heartbeat_at",
    ]
    list_filter = [
        "health",
        "state",
        "region",
        "cluster__reachability",
        K3sVersionFilter,
        LabelFilter,
        HeartbeatFilter,
        "timezone",
    ]
    search_fields = ["code", "name"]
    inlines = [ClusterInline, NodeInline]
    actions = ["probe_clusters", issue_bootstrap_tokens, issue_site_wide_bootstrap_tokens, "decommission_site"]
    list_per_page = 100
    show_full_result_count = False

    def get_queryset(self, request: HttpRequest) -> QuerySet[Site]:
        return (
            super()
            .get_queryset(request)
            .select_related("cluster")
            .annotate(
                node_count=Count("nodes", filter=~Q(nodes__state=NodeState.RETIRED)),
                active_node_count=Count("nodes", filter=Q(nodes__state=NodeState.ACTIVE)),
            )
        )

    def get_readonly_fields(self, request: HttpRequest, obj: Site | None = None) -> Any:
        health = ["health", "health_since", "health_reason", "repo_head_revision", "drifted_since", "sync_error"]
        return ["code", "last_heartbeat_at", "last_applied_revision", *health, "rollout_error"] if obj else []

    @admin.display(description="state", ordering="state")
    def state_badge(self, site: Site) -> str:
        return badge(site.state)

    @admin.display(description="health", ordering="health")
    def health_column(self, site: Site) -> str:
        return health_badge(site.health, site.health_since, site.health_reason)

    @admin.display(description="cluster", ordering="cluster__reachability")
    def cluster_badge(self, site: Site) -> str:
        return badge(site.cluster.reachability)

    @admin.display(description="K3s", ordering="cluster__k3s_version")
    def k3s_version(self, site: Site) -> str:
        return k3s_version_cell(site)

    @admin.display(description="nodes (active/all)")
    def nodes_summary(self, site: Any) -> str:
        return f"{site.active_node_count}/{site.node_count}"

    @admin.action(description="Probe clusters (version and reachability)", permissions=["probe"])
    def probe_clusters(self, request: HttpRequest, queryset: QuerySet[Site]) -> None:
        count = services.site_probe_request(
            sites=list(queryset.exclude(state=SiteState.DECOMMISSIONED)), actor=request.user, source=Source.ADMIN
        )
        self.message_user(request, f"Queued a probe of {count} site(s); results appear in a few seconds.")

    def has_probe_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("sites.probe_site")

    def has_issue_bootstrap_token_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("sites.add_bootstraptoken")

    def has_issue_any_serial_bootstrap_token_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perms(["sites.add_bootstraptoken", devices.ANY_SERIAL_PERMISSION])

    def has_delete_permission(self, request: HttpRequest, obj: Site | None = None) -> bool:
        return False  # sites are decommissioned, not deleted; see services.site_delete for the API door


# --- clusters ---------------------------------------------------------------------------------------


class ClusterForm(ServiceForm):
    """Credentials are write-only: the fields start empty and leaving them empty keeps what is stored.
    The service checks them (sites.kubeconfig): inline data only, refusals shown against the field."""

    kubeconfig = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 6}),
        strip=False,
        help_text="one cluster (server, certificate-authority-data), one user (token, or client-certificate-data "
        "and client-key-data), one context; exec, auth-provider and file paths are refused",
    )
    token = forms.CharField(required=False, widget=forms.PasswordInput(render_value=False))
    ca_data = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 3}), label="CA (PEM or base64)")
    insecure_skip_tls_verify = forms.BooleanField(required=False, help_text="refused in production")
    join_token = forms.CharField(
        required=False, widget=forms.PasswordInput(render_value=False), help_text="K3s token machines join with"
    )

    class Meta:
        model = Cluster
        fields = ["api_url", "join_server_url"]

    def apply(self, actor: Any) -> Cluster:
        data = self.cleaned_data
        join_url = data.get("join_server_url") or None
        if data.get("join_token") or join_url != (self.initial.get("join_server_url") or None):
            self.instance = services.cluster_set_join_config(
                cluster=self.instance,
                actor=actor,
                source=Source.ADMIN,
                server_url=join_url,
                token=data.get("join_token") or None,
            )
        if not data.get("kubeconfig") and not data.get("token"):
            if data.get("api_url") != self.initial.get("api_url"):
                raise forms.ValidationError("changing the API URL needs the credentials to go with it")
            return self.instance
        api_url = data.get("api_url") or None
        if data.get("kubeconfig") and api_url == (self.initial.get("api_url") or None):
            api_url = None  # the field still shows the old URL; a new kubeconfig names its own server
        return services.cluster_set_credentials(
            cluster=self.instance,
            actor=actor,
            source=Source.ADMIN,
            api_url=api_url,
            kubeconfig=data.get("kubeconfig") or None,
            token=data.get("token") or None,
            ca_data=data.get("ca_data") or None,
            insecure_skip_tls_verify=data.get("insecure_skip_tls_verify", False),
        )


@admin.register(Cluster)
class ClusterAdmin(ServiceAdminMixin, admin.ModelAdmin):
    form = ClusterForm
    list_display = ["site", "api_url", "reachability_badge", "k3s_version", "last_contact_at", "has_credentials"]
    list_filter = ["reachability", "site__region"]
    search_fields = ["site__code", "site__name", "api_url"]
    list_select_related = ["site"]
    readonly_fields = [
        "site",
        "has_credentials",
        "has_join_token",
        "k3s_version",
        "reachability",
        "last_contact_at",
        "last_error",
    ]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # a cluster comes with its site

    def has_delete_permission(self, request: HttpRequest, obj: Cluster | None = None) -> bool:
        return False

    @admin.display(description="reachability", ordering="reachability")
    def reachability_badge(self, cluster: Cluster) -> str:
        return badge(cluster.reachability)

    @admin.display(boolean=True)
    def has_credentials(self, cluster: Cluster) -> bool:
        return cluster.has_credentials

    @admin.display(boolean=True, description="has K3s join token")
    def has_join_token(self, cluster: Cluster) -> bool:
        return bool(cluster.join_token_encrypted)


# --- nodes ------------------------------------------------------------------------------------------


class NodeForm(ServiceForm):
    reason = forms.CharField(required=False, help_text="why the state changes (kept in the audit log)")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk is not None and "state" in self.fields:
            allowed = sorted(NODE_MANUAL_TRANSITIONS.get(self.instance.state, frozenset()))
            self.fields["state"].help_text = (
                f"from {self.instance.state} you may set: {', '.join(allowed) or 'nothing'}; "
                "wipe, replace, provision and retire are actions of the node list"
            )

    class Meta:
        model = Node
        fields = ["serial", "site", *services.NODE_FIELDS, "state"]

    def apply(self, actor: Any) -> Node:
        data = {f: self.cleaned_data[f] for f in services.NODE_FIELDS}
        if self.instance.pk is None:
            return services.node_create(
                actor=actor,
                source=Source.ADMIN,
                serial=self.cleaned_data["serial"],
                site=self.cleaned_data["site"],
                **data,
            )
        with transaction.atomic():  # a refused state change leaves the other fields unchanged too
            node = services.node_update(
                node=self.instance, actor=actor, source=Source.ADMIN, site=self.cleaned_data["site"], **data
            )
            if self.cleaned_data["state"] != node.state:
                node = services.node_set_state(
                    node=node,
                    to=self.cleaned_data["state"],
                    actor=actor,
                    source=Source.ADMIN,
                    reason=self.cleaned_data["reason"],
                )
        return node


MAX_NODES_PER_PROVISION = 100


class WipeForm(forms.Form):
    reason = forms.CharField(max_length=500, widget=forms.Textarea(attrs={"rows": 2}))
    confirm = forms.CharField(max_length=63, label="Type the node's hostname to confirm")
    rejoin = forms.BooleanField(required=False, help_text="register again with a fresh token and come back active")
    retire = forms.BooleanField(required=False, help_text="retire the machine once wiped")


class RetireForm(forms.Form):
    reason = forms.CharField(max_length=500, widget=forms.Textarea(attrs={"rows": 2}))
    confirm = forms.CharField(max_length=63, label="Type the node's hostname to confirm")


class ReplaceForm(forms.Form):
    reason = forms.CharField(max_length=500, widget=forms.Textarea(attrs={"rows": 2}))
    confirm = forms.CharField(max_length=63, label="Type the node's hostname to confirm")
    replacement_serial = forms.CharField(max_length=64)
    replacement_mac = forms.CharField(max_length=17)
    shipment_ref = forms.CharField(max_length=200, required=False, label="Shipment reference")
    hostname = forms.CharField(max_length=63, required=False, help_text="default: the old node's hostname")


@admin.register(Node)
class NodeAdmin(ServiceAdminMixin, admin.ModelAdmin):
    form = NodeForm
    list_display = [
        "hostname", "serial", "site_link", "role", "state_badge", "health_column", "mac", "hardware_model",
        "last_seen_at",
    ]  # fmt: skip
    list_filter = ["health", "state", "role", "site__region", LastSeenFilter, "hardware_model"]
    search_fields = ["serial", "hostname", "mac", "site__code"]
    list_select_related = ["site"]
    autocomplete_fields = ["site"]
    list_per_page = 100
    show_full_result_count = False
    inlines = [NodeCredentialInline]
    actions = ["revoke_credentials", "provision_nodes", "wipe_node", "replace_node", "retire_node"]

    # --- lifecycle actions: a confirmation page, then the same services as the API ------------------

    def get_urls(self) -> list[Any]:
        # `<id>/replace/`: the Replace confirmation page for one node, linked from its node-down alert.
        view = self.admin_site.admin_view(self.replace_view)
        return [path("<int:node_id>/replace/", view, name="sites_node_replace"), *super().get_urls()]

    def replace_view(self, request: HttpRequest, node_id: int) -> HttpResponse:
        """The Replace action for one node (the same form, permission and service as the list's action)."""
        if not self.has_wipe_node_permission(request):
            raise PermissionDenied
        queryset = Node.objects.filter(pk=node_id)
        if not queryset.exists():
            raise Http404(f"no node {node_id}")
        response = self._destructive(request, queryset, "replace_node", "Replace", ReplaceForm)
        return response or HttpResponseRedirect(reverse("admin:sites_node_change", args=[node_id]))

    def has_provision_node_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.has_perm("sites.provision_node"))

    def has_wipe_node_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.has_perm("sites.wipe_node"))

    def has_retire_node_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.has_perm("sites.retire_node"))

    @admin.action(description="Provision selected nodes…", permissions=["provision_node"])
    def provision_nodes(self, request: HttpRequest, queryset: QuerySet[Node]) -> HttpResponse | None:
        nodes = list(queryset.select_related("site")[:MAX_NODES_PER_PROVISION])
        if "confirm" not in request.POST:
            return self._confirmation(request, "provision_nodes", "Provision", nodes, None)
        started = 0
        for node in nodes:
            try:
                lifecycle.node_provision_request(node=node, actor=request.user, source=Source.ADMIN)
                started += 1
            except FleetError as exc:
                self.message_user(request, f"{node.hostname}: {exc.message}", messages.ERROR)
        if started:
            self.message_user(request, f"Started provisioning of {started} node(s); follow them under Workflow runs.")
        return None

    @admin.action(description="Wipe node…", permissions=["wipe_node"])
    def wipe_node(self, request: HttpRequest, queryset: QuerySet[Node]) -> HttpResponse | None:
        return self._destructive(request, queryset, "wipe_node", "Wipe", WipeForm)

    @admin.action(description="Replace node (throw-away)…", permissions=["wipe_node"])
    def replace_node(self, request: HttpRequest, queryset: QuerySet[Node]) -> HttpResponse | None:
        return self._destructive(request, queryset, "replace_node", "Replace", ReplaceForm)

    @admin.action(description="Retire node (pre-registered, wiped or quarantined)…", permissions=["retire_node"])
    def retire_node(self, request: HttpRequest, queryset: QuerySet[Node]) -> HttpResponse | None:
        return self._destructive(request, queryset, "retire_node", "Retire", RetireForm)

    def _destructive(
        self, request: HttpRequest, queryset: QuerySet[Node], action: str, verb: str, form_class: type[forms.Form]
    ) -> HttpResponse | None:
        """One node at a time: a reason and its hostname typed out, then the service decides."""
        nodes = list(queryset.select_related("site")[:2])
        if len(nodes) != 1:
            self.message_user(request, f"{verb} one node at a time: select exactly one.", messages.ERROR)
            return None
        node = nodes[0]
        form = form_class(request.POST if "confirm" in request.POST else None)
        if form.is_bound and form.is_valid():
            data = dict(form.cleaned_data)
            try:
                if action == "retire_node":
                    lifecycle.node_retire(node=node, actor=request.user, source=Source.ADMIN, **data)
                    self.message_user(request, f"{node.hostname} is retired; its credential is revoked.")
                    return None
                if action == "wipe_node":
                    run = lifecycle.node_wipe_request(node=node, actor=request.user, source=Source.ADMIN, **data)
                else:
                    data = {k: v for k, v in data.items() if v not in ("", None)}
                    run = lifecycle.node_replace_request(node=node, actor=request.user, source=Source.ADMIN, **data)
            except FleetError as exc:
                _errors_to_form(form, exc)
                if not any(f in form.fields for f in exc.errors):
                    self.message_user(request, exc.message, messages.ERROR)
                    return None
            else:
                url = reverse("admin:workflows_workflowrun_change", args=[run.pk])
                self.message_user(
                    request, format_html('{} of {} started: <a href="{}">run {}</a>.', verb, node.hostname, url, run.pk)
                )
                return None
        return self._confirmation(request, action, verb, nodes, form)

    def _confirmation(
        self, request: HttpRequest, action: str, verb: str, nodes: list[Node], form: forms.Form | None
    ) -> HttpResponse:
        context = {
            **self.admin_site.each_context(request),
            "title": f"{verb} {'node' if len(nodes) == 1 else 'nodes'}",
            "verb": verb,
            "action": action,
            "nodes": nodes,
            "form": form,
            "opts": self.model._meta,
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        }
        return TemplateResponse(request, "admin/sites/node/lifecycle_confirmation.html", context)

    @admin.display(description="workflow runs")
    def workflow_runs(self, node: Node) -> str:
        url = reverse("admin:workflows_workflowrun_changelist")
        count = runs_of(node).count()
        return format_html('<a href="{}?subject_type=sites.node&amp;subject_id={}">{} run(s)</a>', url, node.pk, count)

    @admin.action(description="Revoke device credentials", permissions=["change"])
    def revoke_credentials(self, request: HttpRequest, queryset: QuerySet[Node]) -> None:
        count = sum(
            devices.node_credentials_revoke(
                node=node, actor=request.user, source=Source.ADMIN, reason="revoked by staff"
            )
            for node in queryset
        )
        self.message_user(request, f"Revoked {count} credential(s); those machines get 401 until they register again.")

    def get_readonly_fields(self, request: HttpRequest, obj: Node | None = None) -> Any:
        fixed = [
            "state_changed_at", "state_deadline", "state_reason", "last_seen_at", "facts", "versions", "workflow_runs",
            "health", "health_since", "health_reason", "last_heartbeat_at",
        ]  # fmt: skip
        return ["serial", *fixed] if obj else fixed

    def get_fields(self, request: HttpRequest, obj: Node | None = None) -> Any:
        fields = ["serial", "site", "hostname", "mac", "role", "hardware_model"]
        if obj is None:
            return fields
        return [
            *fields,
            "state",
            "reason",
            "state_changed_at",
            "state_deadline",
            "state_reason",
            "workflow_runs",
            "last_seen_at",
            "last_heartbeat_at",
            "health",
            "health_since",
            "health_reason",
            "facts",
            "versions",
        ]

    @admin.display(description="state", ordering="state")
    def state_badge(self, node: Node) -> str:
        return badge(node.state)

    @admin.display(description="health", ordering="health")
    def health_column(self, node: Node) -> str:
        return health_badge(node.health, node.health_since, node.health_reason)

    @admin.display(description="site", ordering="site__code")
    def site_link(self, node: Node) -> str:
        return format_html('<a href="../site/{}/change/">{}</a>', node.site_id, node.site.code)

    def has_delete_permission(self, request: HttpRequest, obj: Node | None = None) -> bool:
        return False  # machines are retired, not deleted

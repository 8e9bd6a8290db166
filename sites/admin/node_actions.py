"""The node lifecycle in the admin: Provision, Wipe, Replace, Retire and Revoke credentials, as list actions
and as buttons on the node page (and the site page's node table), all through one confirmation page and
the same permissions and doors as the API (sites.lifecycle, sites.devices).

Wipe, Replace and Retire destroy what is on a machine: one node at a time, a reason, and its hostname typed
out. The per-node URLs (`<id>/wipe/`, `<id>/replace/`, ...) show the same confirmation as the list action;
a node-down alert links to `<id>/replace/`.
"""

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html

from fleet.admin_forms import errors_to_form
from fleet.audit.choices import Source
from fleet.errors import FleetError
from sites import devices, lifecycle
from sites.choices import NODE_RETIRABLE_STATES, NodeState
from sites.models import Node

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


# The node page's buttons: URL suffix -> (list action, label, permission method). The page shows a button
# only to those who hold its permission; the view checks it again.
NODE_BUTTONS: dict[str, tuple[str, str, str]] = {
    "provision": ("provision_nodes", "Provision", "has_provision_node_permission"),
    "wipe": ("wipe_node", "Wipe", "has_wipe_node_permission"),
    "replace": ("replace_node", "Replace", "has_wipe_node_permission"),
    "revoke": ("revoke_credentials", "Revoke credentials", "has_revoke_permission"),
    "retire": ("retire_node", "Retire", "has_retire_node_permission"),
}


# The states in which each button is shown: those its door accepts (sites.lifecycle).
BUTTON_STATES: dict[str, frozenset[str]] = {
    "provision": lifecycle.PROVISIONABLE_STATES,
    "wipe": lifecycle.WIPEABLE_STATES,
    "replace": lifecycle.REPLACEABLE_STATES,
    "revoke": frozenset(set(NodeState) - {NodeState.RETIRED}),
    "retire": NODE_RETIRABLE_STATES,
}


class NodeLifecycleAdminMixin(admin.ModelAdmin):
    """The lifecycle actions of NodeAdmin, and one page per node and action."""

    def get_urls(self) -> list[URLPattern]:
        own = [
            path(
                f"<int:node_id>/{suffix}/",
                self.admin_site.admin_view(self.node_button_view),
                {"suffix": suffix},
                name=f"sites_node_{suffix}",
            )
            for suffix in NODE_BUTTONS
        ]
        return own + super().get_urls()

    def node_buttons(self, request: HttpRequest, node: Node) -> list[tuple[str, str]]:
        """(label, url) of the buttons this person may use on this node's page."""
        return [
            (label, reverse(f"admin:sites_node_{suffix}", args=[node.pk]))
            for suffix, (_action, label, permission) in NODE_BUTTONS.items()
            if node.state in BUTTON_STATES[suffix] and getattr(self, permission)(request)
        ]

    def node_button_view(self, request: HttpRequest, node_id: int, suffix: str) -> HttpResponse:
        """One node's Wipe, Replace, ... page: the list action's confirmation, then back to the node page."""
        action, _label, permission = NODE_BUTTONS[suffix]
        if not getattr(self, permission)(request):
            raise PermissionDenied
        queryset = Node.objects.filter(pk=node_id)
        if not queryset.exists():
            raise Http404(f"no node {node_id}")
        response = getattr(self, action)(request, queryset)
        return response or HttpResponseRedirect(reverse("admin:sites_node_change", args=[node_id]))

    def replace_view(self, request: HttpRequest, node_id: int) -> HttpResponse:
        return self.node_button_view(request, node_id, "replace")

    def has_provision_node_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.has_perm("sites.provision_node"))

    def has_wipe_node_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.has_perm("sites.wipe_node"))

    def has_retire_node_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.has_perm("sites.retire_node"))

    def has_revoke_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.has_perm("sites.change_node"))

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

    @admin.action(description="Revoke device credentials…", permissions=["revoke"])
    def revoke_credentials(self, request: HttpRequest, queryset: QuerySet[Node]) -> HttpResponse | None:
        nodes = list(queryset.select_related("site")[:MAX_NODES_PER_PROVISION])
        if "confirm" not in request.POST:
            return self._confirmation(request, "revoke_credentials", "Revoke credentials", nodes, None)
        count = sum(
            devices.node_credentials_revoke(
                node=node, actor=request.user, source=Source.ADMIN, reason="revoked by staff"
            )
            for node in nodes
        )
        self.message_user(request, f"Revoked {count} credential(s); those machines get 401 until they register again.")
        return None

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
                if not errors_to_form(form, exc):
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
            "back_url": _back_url(request, nodes),
        }
        return TemplateResponse(request, "admin/sites/node/lifecycle_confirmation.html", context)


def _back_url(request: HttpRequest, nodes: list[Node]) -> str:
    """Where "Go back" leads: the node's page when the confirmation came from it, else the node list."""
    if len(nodes) == 1 and request.resolver_match and request.resolver_match.url_name != "sites_node_changelist":
        return reverse("admin:sites_node_change", args=[nodes[0].pk])
    return reverse("admin:sites_node_changelist")


def node_buttons_for_site(
    request: HttpRequest, model_admin: Any, nodes: list[Node]
) -> dict[int, list[tuple[str, str]]]:
    """The buttons of each node on a site's page (the permissions are read once, not per node)."""
    allowed = [
        (suffix, label)
        for suffix, (_action, label, permission) in NODE_BUTTONS.items()
        if getattr(model_admin, permission)(request)
    ]
    return {
        node.pk: [
            (label, reverse(f"admin:sites_node_{suffix}", args=[node.pk]))
            for suffix, label in allowed
            if node.state in BUTTON_STATES[suffix]
        ]
        for node in nodes
    }

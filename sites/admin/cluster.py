"""The cluster page: reachability and write-only credentials, saved through sites.services."""

from typing import Any

from django import forms
from django.contrib import admin
from django.http import HttpRequest
from django.utils.safestring import SafeString

from fleet.admin_display import badge, raw_detail, when
from fleet.admin_filters import IndexedValuesFilter
from fleet.admin_forms import ServiceAdminMixin, ServiceForm
from fleet.audit.choices import Source
from sites import services
from sites.models import Cluster


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
    list_display = ["site", "api_url", "reachability_badge", "k3s_version", "last_contact", "has_credentials"]
    list_filter = ["reachability", ("site__region", IndexedValuesFilter)]
    search_fields = ["site__code", "site__name", "api_url"]
    list_select_related = ["site"]
    readonly_fields = [
        "site",
        "has_credentials",
        "has_join_token",
        "k3s_version",
        "reachability",
        "last_contact_at",
        "error",
    ]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # a cluster comes with its site

    def has_delete_permission(self, request: HttpRequest, obj: Cluster | None = None) -> bool:
        return False

    @admin.display(description="last contact", ordering="last_contact_at")
    def last_contact(self, cluster: Cluster) -> SafeString:
        return when(cluster.last_contact_at, cluster.site.timezone)

    @admin.display(description="last error")
    def error(self, cluster: Cluster) -> SafeString:
        """The sentence for people, the raw error behind a disclosure (sites.messages)."""
        return raw_detail(cluster.last_error, cluster.last_error_detail)

    @admin.display(description="reachability", ordering="reachability")
    def reachability_badge(self, cluster: Cluster) -> str:
        return badge(cluster.reachability, cluster.get_reachability_display())

    @admin.display(boolean=True)
    def has_credentials(self, cluster: Cluster) -> bool:
        return cluster.has_credentials

    @admin.display(boolean=True, description="has K3s join token")
    def has_join_token(self, cluster: Cluster) -> bool:
        return bool(cluster.join_token_encrypted)

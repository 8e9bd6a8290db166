"""Django model permissions, enforced for reads too.

DRF's DjangoModelPermissions lets any authenticated user read; support staff here are given explicit
`view_*` permissions, so a user without them sees nothing.
"""

from typing import Any

from rest_framework.permissions import DjangoModelPermissions


class ModelPermissions(DjangoModelPermissions):
    """`view_<model>` for reads, add/change/delete for writes; anonymous users are refused (401)."""

    perms_map = {
        "GET": ["%(app_label)s.view_%(model_name)s"],
        "OPTIONS": [],
        "HEAD": ["%(app_label)s.view_%(model_name)s"],
        "POST": ["%(app_label)s.add_%(model_name)s"],
        "PUT": ["%(app_label)s.change_%(model_name)s"],
        "PATCH": ["%(app_label)s.change_%(model_name)s"],
        "DELETE": ["%(app_label)s.delete_%(model_name)s"],
    }


class ActionPermission(ModelPermissions):
    """For `@action` endpoints: the view names the permissions its POST needs in `action_permissions`."""

    def has_permission(self, request: Any, view: Any) -> bool:
        if not request.user or not request.user.is_authenticated:
            return False
        required = getattr(view, "action_permissions", {}).get(view.action)
        if required is None:
            return super().has_permission(request, view)
        return bool(request.user.has_perms(required))

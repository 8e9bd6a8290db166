"""The OpenAPI schema class: drf-spectacular's, reading an integer lookup route as the model's id.

fleet.api.routers.FleetRouter matches integer ids with a digits-only pattern. drf-spectacular takes
any explicit route pattern for a string with that pattern, so the schema would call every `{id}` a
string; this resolves those parameters from the model, as it does for DRF's default pattern, and the
schema keeps saying `integer` (tests/fleet/test_api_inputs.py checks it). It also names the request of
a fleet.api.service_views.ServiceModelViewSet's create and update.
"""

from typing import Any

from drf_spectacular.openapi import AutoSchema

from fleet.api.routers import INTEGER_LOOKUP

DRF_DEFAULT_LOOKUP = "[^/.]+"


class FleetAutoSchema(AutoSchema):
    def get_request_serializer(self) -> Any:
        """The input serializer of a ServiceModelViewSet's create and update (PUT), as they validate."""
        write = getattr(self.view, "write_serializer_class", None)
        if write is not None and getattr(self.view, "action", None) in ("create", "update"):
            return write
        return super().get_request_serializer()

    def _resolve_path_parameters(self, variables: Any) -> Any:
        original = self.path_regex
        self.path_regex = original.replace(INTEGER_LOOKUP, DRF_DEFAULT_LOOKUP)
        try:
            return super()._resolve_path_parameters(variables)
        finally:
            self.path_regex = original

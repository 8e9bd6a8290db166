"""The OpenAPI schema class: drf-spectacular's, reading an integer lookup route as the model's id.

fleet.api.routers.FleetRouter matches integer ids with a digits-only pattern. drf-spectacular takes
any explicit route pattern for a string with that pattern, so the schema would call every `{id}` a
string; this resolves those parameters from the model, as it does for DRF's default pattern, and the
schema keeps saying `integer` (tests/fleet/test_api_inputs.py checks it).
"""

from typing import Any

from drf_spectacular.openapi import AutoSchema

from fleet.api.routers import INTEGER_LOOKUP

DRF_DEFAULT_LOOKUP = "[^/.]+"


class FleetAutoSchema(AutoSchema):
    def _resolve_path_parameters(self, variables: Any) -> Any:
        original = self.path_regex
        self.path_regex = original.replace(INTEGER_LOOKUP, DRF_DEFAULT_LOOKUP)
        try:
            return super()._resolve_path_parameters(variables)
        finally:
            self.path_regex = original

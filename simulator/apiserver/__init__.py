"""The API semantics of one site, independent of HTTP (`ApiServer`), split by what each part holds:
`api_server` (the `ApiServer` every writer goes through), `bodies` (decoding and checking request
bodies, patch media types), `defaults` (per-kind defaulting on create), `deletion` (garbage collection
and namespace finalization) and `subresources` (scale and eviction)."""

from simulator.apiserver.api_server import NAMESPACE_FINALIZE_SECONDS, ApiServer
from simulator.apiserver.bodies import PATCH_TYPES, apply_patch, parse_body, random_suffix

__all__ = ["NAMESPACE_FINALIZE_SECONDS", "PATCH_TYPES", "ApiServer", "apply_patch", "parse_body", "random_suffix"]

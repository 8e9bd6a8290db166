"""Pagination: cursor pagination for the large, growing lists; page numbers elsewhere."""

from rest_framework.pagination import CursorPagination, PageNumberPagination


class StandardPagination(PageNumberPagination):
    """Page numbers with a client-chosen page size, for small lists (applications, plans)."""

    page_size_query_param = "page_size"
    max_page_size = 500


class FleetCursorPagination(CursorPagination):
    """Stable, O(1)-per-page pagination for lists of thousands (sites, nodes, audit events)."""

    page_size_query_param = "page_size"
    max_page_size = 1000
    ordering = "-id"

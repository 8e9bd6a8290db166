"""The git host's REST API: the subset of GitLab's API v4 that edgefleet uses, shaped so that python-gitlab
accepts it unchanged; the routes it serves and its error and pagination conventions are listed in
docs/SIMULATOR.md, "The git host". `call` holds one request and its checks, `render` the JSON of
groups, projects and branches, `routes` the groups and projects, `project_parts` a project's branches,
deploy tokens and files."""

from simulator.githost.api.call import API_PREFIX, error_response
from simulator.githost.api.routes import dispatch

__all__ = ["API_PREFIX", "dispatch", "error_response"]

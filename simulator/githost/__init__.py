"""The simulator's git host: a GitLab-compatible subset of the REST API v4 and git's smart HTTP protocol,
served beside the clusters under `/gitlab/` (docs/SIMULATOR.md, "The git host").

- `records`: groups, projects, access and deploy tokens, roles and scopes; who may read over git.
- `state`: those records kept in `DIR/githost/state.json`, and the token checks of every request.
- `errors`: refusals with GitLab's status, body and headers.
- `api/`: the REST API (`/gitlab/api/v4/...`) that python-gitlab talks to unchanged.
- `smart_http`: `git clone/fetch/push https://.../gitlab/<group>/<project>.git`, answered by
  `git http-backend` run per request, behind HTTP Basic authentication.
- `repos`: the few repository operations the API needs (empty?, read a file, commit a file).

The projects of the sites group live at `DIR/repos/<path>.git`, the very repositories the sites' GitOps
agents read, so a push over HTTPS reaches the edge exactly as a push through a `file://` URL does.
"""

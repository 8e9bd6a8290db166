"""Cluster credentials as edgefleet accepts them: one parser for the door that stores them and the worker
that uses them.

A kubeconfig is a program as much as a document. `exec` and `auth-provider` run commands, `tokenFile`,
`client-certificate`, `client-key` and `certificate-authority` read files, `proxy-url` and
`tls-server-name` redirect or loosen the connection, `as` and its kin impersonate someone else, and the
official loader honours every one of them on the worker, as the worker's user. So edgefleet never hands
stored input to that loader. It accepts inline data on an allow-list, and `sites/clusters/connection.py`
builds the client's configuration itself from the small value parsed here (`ClusterCredentials`).

Accepted, and nothing else:
- a kubeconfig of exactly one cluster (`server`, optional `certificate-authority-data`), one user
  (`token`, or `client-certificate-data` with `client-key-data`) and one context joining them (its
  `namespace` is allowed and ignored);
- the token form: `api_url`, `token`, optional `ca_data` (PEM, or base64 of PEM) and, outside production,
  `insecure_skip_tls_verify`.
The server is https; http only when `FLEET_ENV` is not production. Certificates and keys must parse.

`parse_kubeconfig` and `parse_token` run in `services.cluster_set_credentials` before anything is stored
(an error becomes a 400 naming the field); `parse_stored` runs in the adapter each time it builds a client
from a row (an error becomes `ClusterRefused`), so a row written around the services is refused too.
Messages name the offending field and never contain a secret.
"""

import base64
import binascii
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import yaml
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization

MAX_KUBECONFIG_CHARS = 100_000
MAX_TOKEN_CHARS = 10_000
# A bearer token goes into an HTTP header: printable ASCII, no spaces, nothing that could end the header.
TOKEN_RE = re.compile(r"^[\x21-\x7e]+$")

TOP_LEVEL_KEYS = {"apiVersion", "kind", "clusters", "users", "contexts", "current-context", "preferences"}
ALLOWED = {
    "cluster": {"server", "certificate-authority-data"},
    "user": {"token", "client-certificate-data", "client-key-data"},
    "context": {"cluster", "user", "namespace"},
}
# Why a well-known field is refused, so whoever pasted the kubeconfig knows what to do instead.
REFUSED_BECAUSE = {
    "exec": "it would run a command on the workers",
    "auth-provider": "it would run an authentication plugin on the workers",
    "tokenFile": "it would read a file on the workers; give the token itself as token",
    "client-certificate": "it would read a file on the workers; inline it as client-certificate-data",
    "client-key": "it would read a file on the workers; inline it as client-key-data",
    "certificate-authority": "it would read a file on the workers; inline it as certificate-authority-data",
    "proxy-url": "it would send the traffic through another host",
    "tls-server-name": "it would change the name the server's certificate is checked against",
    "insecure-skip-tls-verify": "it would turn off the server certificate check; give certificate-authority-data",
    "disable-compression": "it is not supported",
    "as": "impersonation is not supported",
    "as-uid": "impersonation is not supported",
    "as-groups": "impersonation is not supported",
    "as-user-extra": "impersonation is not supported",
    "username": "basic authentication is not supported; use a token or a client certificate",
    "password": "basic authentication is not supported; use a token or a client certificate",
    "extensions": "extensions are not supported",
}


class CredentialsInvalid(ValueError):
    """Credentials edgefleet will not use; `field` is the input field to show the message against."""

    def __init__(self, message: str, *, field: str):
        super().__init__(message)
        self.message = message
        self.field = field


@dataclass(frozen=True)
class ClusterCredentials:
    """What the adapter needs to reach a cluster, every value inline and already checked.

    `token` or the client certificate pair is set, not both. PEM values hold only what their name says
    (certificates re-encoded from the parsed objects, the key as unencrypted PKCS#8)."""

    kind: str  # "kubeconfig" or "token": what was given, for the audit log
    server: str
    ca_pem: str | None = None
    token: str | None = None
    client_cert_pem: str | None = None
    client_key_pem: str | None = None
    insecure_skip_tls_verify: bool = False

    def __repr__(self) -> str:  # a value that holds secrets must not print them in a traceback
        return f"ClusterCredentials(kind={self.kind!r}, server={self.server!r})"


# --- the two forms ------------------------------------------------------------------------------------


def parse_kubeconfig(text: Any, *, production: bool) -> ClusterCredentials:
    """Parse and check a kubeconfig; raise CredentialsInvalid (field `kubeconfig`) naming what is wrong."""
    if not isinstance(text, str) or not text.strip():
        raise _bad("a kubeconfig must be YAML text")
    if len(text) > MAX_KUBECONFIG_CHARS:
        raise _bad(f"the kubeconfig is longer than {MAX_KUBECONFIG_CHARS} characters")
    doc = _load_yaml(text)
    if not isinstance(doc, dict):
        raise _bad("a kubeconfig must be a YAML mapping of kind Config")
    _only_allowed(doc, TOP_LEVEL_KEYS, path="", allowed_text=", ".join(sorted(TOP_LEVEL_KEYS)))
    if doc.get("kind", "Config") != "Config":
        raise _bad(f"kind is {doc.get('kind')!r}; a kubeconfig is of kind Config")
    if doc.get("apiVersion", "v1") != "v1":
        raise _bad(f"apiVersion is {doc.get('apiVersion')!r}; only v1 is known")
    if doc.get("preferences") not in (None, {}):
        raise _bad("preferences are not supported; leave them empty")
    cluster_name, cluster = _only_entry(doc, "clusters", "cluster")
    user_name, user = _only_entry(doc, "users", "user")
    context_name, context = _only_entry(doc, "contexts", "context")

    _only_allowed(cluster, ALLOWED["cluster"], path="clusters[0].cluster")
    _only_allowed(user, ALLOWED["user"], path="users[0].user")
    _only_allowed(context, ALLOWED["context"], path="contexts[0].context")
    if context.get("cluster") != cluster_name:
        raise _bad(f"context {context_name!r} names cluster {context.get('cluster')!r}, not {cluster_name!r}")
    if context.get("user") != user_name:
        raise _bad(f"context {context_name!r} names user {context.get('user')!r}, not {user_name!r}")
    if not isinstance(context.get("namespace") or "", str):
        raise _bad("contexts[0].context.namespace must be a string")
    current = doc.get("current-context")
    if current not in (None, "", context_name):
        raise _bad(f"current-context {current!r} is not the context the file defines ({context_name!r})")

    server = check_server(cluster.get("server"), production=production, field="kubeconfig", what="the server")
    ca_pem = None
    if cluster.get("certificate-authority-data") is not None:
        pem = _base64_text(cluster["certificate-authority-data"], "clusters[0].cluster.certificate-authority-data")
        ca_pem = _certificates(pem, "clusters[0].cluster.certificate-authority-data", field="kubeconfig")

    token, cert, key = user.get("token"), user.get("client-certificate-data"), user.get("client-key-data")
    if token is not None and (cert is not None or key is not None):
        raise _bad("the user gives both a token and a client certificate; give one of them")
    if token is not None:
        return ClusterCredentials(
            kind="kubeconfig", server=server, ca_pem=ca_pem, token=check_token(token, field="kubeconfig")
        )
    if cert is None or key is None:
        raise _bad("the user needs a token, or client-certificate-data with client-key-data")
    cert_pem = _certificates(
        _base64_text(cert, "users[0].user.client-certificate-data"),
        "users[0].user.client-certificate-data",
        field="kubeconfig",
    )
    key_pem = _private_key(_base64_text(key, "users[0].user.client-key-data"), cert_pem)
    return ClusterCredentials(
        kind="kubeconfig", server=server, ca_pem=ca_pem, client_cert_pem=cert_pem, client_key_pem=key_pem
    )


def parse_token(
    *, api_url: Any, token: Any, ca_data: Any = None, insecure_skip_tls_verify: Any = False, production: bool
) -> ClusterCredentials:
    """Check the token form; CredentialsInvalid names the field (`api_url`, `token`, `ca_data`, ...)."""
    server = check_server(api_url, production=production, field="api_url", what="api_url")
    checked_token = check_token(token, field="token")
    if not isinstance(insecure_skip_tls_verify, bool):
        raise CredentialsInvalid("insecure_skip_tls_verify must be true or false", field="insecure_skip_tls_verify")
    if insecure_skip_tls_verify and production:
        raise CredentialsInvalid(
            "insecure_skip_tls_verify is refused in production: give the cluster's CA as ca_data",
            field="insecure_skip_tls_verify",
        )
    ca_pem = None
    if ca_data not in (None, ""):
        if not isinstance(ca_data, str):
            raise CredentialsInvalid("ca_data must be PEM text, or base64 of it", field="ca_data")
        pem = ca_data if "-----BEGIN" in ca_data else _base64_text(ca_data, "ca_data", field="ca_data")
        ca_pem = _certificates(pem, "ca_data", field="ca_data")
    return ClusterCredentials(
        kind="token",
        server=server,
        ca_pem=ca_pem,
        token=checked_token,
        insecure_skip_tls_verify=insecure_skip_tls_verify,
    )


def parse_stored(secret: Any, *, api_url: str, production: bool) -> ClusterCredentials:
    """The decrypted JSON of `Cluster.credentials_encrypted`, checked again exactly as on write.

    `{"kubeconfig": text}` or `{"token", "ca_data", "insecure_skip_tls_verify"}` (with the cluster's
    api_url); any other shape is refused, so nothing that bypassed the services reaches the client."""
    if isinstance(secret, dict) and set(secret) == {"kubeconfig"}:
        return parse_kubeconfig(secret["kubeconfig"], production=production)
    if (
        isinstance(secret, dict)
        and "token" in secret
        and set(secret) <= {"token", "ca_data", "insecure_skip_tls_verify"}
    ):
        return parse_token(
            api_url=api_url,
            token=secret["token"],
            ca_data=secret.get("ca_data"),
            insecure_skip_tls_verify=secret.get("insecure_skip_tls_verify", False),
            production=production,
        )
    keys = ", ".join(sorted(str(key) for key in secret)) if isinstance(secret, dict) else type(secret).__name__
    raise CredentialsInvalid(
        f"the stored credentials are neither a kubeconfig nor a token (they hold: {keys or 'nothing'})",
        field="credentials",
    )


# --- single values ------------------------------------------------------------------------------------


def check_server(value: Any, *, production: bool, field: str, what: str) -> str:
    """An absolute https URL with a host and no user-info, query or fragment; http only outside production."""
    if not isinstance(value, str) or not value:
        raise CredentialsInvalid(f"{_prefix(field)}{what} is missing: give the cluster's https:// URL", field=field)
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number in range
    except ValueError as exc:
        raise CredentialsInvalid(f"{_prefix(field)}{what} {value!r} is not an http(s) URL: {exc}", field=field) from exc
    if parts.scheme not in ("https", "http") or not parts.hostname or not value.isprintable() or " " in value:
        raise CredentialsInvalid(f"{_prefix(field)}{what} {value!r} is not an http(s) URL", field=field)
    if parts.username is not None or parts.password is not None:
        raise CredentialsInvalid(f"{_prefix(field)}{what} must not carry a user name or password", field=field)
    if parts.query or parts.fragment:
        raise CredentialsInvalid(f"{_prefix(field)}{what} must not have a query or a fragment", field=field)
    if parts.scheme == "http" and production:
        raise CredentialsInvalid(
            f"{_prefix(field)}{what} {value!r} is plain http, refused in production: the credentials would cross "
            "the network unencrypted; use https",
            field=field,
        )
    return value.rstrip("/")


def check_token(value: Any, *, field: str) -> str:
    if not isinstance(value, str) or not value:
        raise CredentialsInvalid(f"{_prefix(field)}the token must be a non-empty string", field=field)
    if len(value) > MAX_TOKEN_CHARS or not TOKEN_RE.match(value):
        raise CredentialsInvalid(
            f"{_prefix(field)}the token must be at most {MAX_TOKEN_CHARS} printable characters without spaces",
            field=field,
        )
    return value


# --- helpers ------------------------------------------------------------------------------------------


def _prefix(field: str) -> str:
    return "kubeconfig: " if field == "kubeconfig" else ""


def _bad(message: str) -> CredentialsInvalid:
    return CredentialsInvalid(f"kubeconfig: {message}", field="kubeconfig")


def _load_yaml(text: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        # str(exc) quotes the document around the mark, and the document holds secrets: say where only.
        mark = exc.problem_mark or exc.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise _bad(f"not valid YAML: {exc.problem or exc.context or 'cannot be parsed'}{where}") from exc
    except (yaml.YAMLError, ValueError, TypeError, RecursionError) as exc:
        raise _bad(f"not valid YAML ({type(exc).__name__})") from exc


def _only_allowed(mapping: dict[Any, Any], allowed: set[str], *, path: str, allowed_text: str = "") -> None:
    for key in mapping:
        if key in allowed:
            continue
        where = f"{path}.{key}" if path else str(key)
        why = REFUSED_BECAUSE.get(key) if isinstance(key, str) else None
        if why is None:
            why = f"only {allowed_text or ', '.join(sorted(allowed))} are accepted here"
        raise _bad(f"{where} is not accepted: {why}")


def _only_entry(doc: dict[str, Any], key: str, inner: str) -> tuple[str, dict[str, Any]]:
    """The single named entry of `clusters`, `users` or `contexts`, with its inner mapping."""
    entries = doc.get(key)
    if not isinstance(entries, list) or len(entries) != 1:
        found = len(entries) if isinstance(entries, list) else 0
        raise _bad(f"{key} must list exactly one {inner} (found {found}): edgefleet talks to one cluster per site")
    entry = entries[0]
    if not isinstance(entry, dict):
        raise _bad(f"{key}[0] must be a mapping with a name and a {inner}")
    _only_allowed(entry, {"name", inner}, path=f"{key}[0]")
    name = entry.get("name")
    if not isinstance(name, str) or not name:
        raise _bad(f"{key}[0] has no name")
    body = entry.get(inner)
    if not isinstance(body, dict):
        raise _bad(f"{key}[0] ({name!r}) has no {inner} mapping")
    return name, body


def _base64_text(value: Any, where: str, *, field: str = "kubeconfig") -> str:
    """Base64 (whitespace ignored) of ASCII text, decoded; CredentialsInvalid otherwise."""
    if not isinstance(value, str) or not value.strip():
        raise CredentialsInvalid(f"{_prefix(field)}{where} must be a base64 string", field=field)
    try:
        return base64.b64decode("".join(value.split()), validate=True).decode("ascii")
    except (binascii.Error, ValueError) as exc:
        raise CredentialsInvalid(f"{_prefix(field)}{where} is not valid base64 of PEM text", field=field) from exc


def _certificates(pem: str, where: str, *, field: str) -> str:
    """One or more PEM certificates, re-encoded from the parsed objects (nothing else carried along)."""
    try:
        certificates = x509.load_pem_x509_certificates(pem.encode("ascii"))
    except (ValueError, UnicodeEncodeError) as exc:
        raise CredentialsInvalid(f"{_prefix(field)}{where} is not a PEM certificate", field=field) from exc
    return "".join(cert.public_bytes(serialization.Encoding.PEM).decode("ascii") for cert in certificates)


def _private_key(pem: str, cert_pem: str) -> str:
    """An unencrypted PEM private key that belongs to the client certificate, re-encoded as PKCS#8."""
    where = "users[0].user.client-key-data"
    try:
        key = serialization.load_pem_private_key(pem.encode("ascii"), password=None)
    except TypeError as exc:  # the key is encrypted: the worker has no passphrase to give
        raise _bad(f"{where} is an encrypted key; give it unencrypted") from exc
    except (ValueError, UnicodeEncodeError, UnsupportedAlgorithm) as exc:
        raise _bad(f"{where} is not a PEM private key") from exc
    public = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    leaf = x509.load_pem_x509_certificates(cert_pem.encode("ascii"))[0]
    if key.public_key().public_bytes(*public) != leaf.public_key().public_bytes(*public):
        raise _bad(f"{where} is not the key of the client certificate")
    encoding = serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    return key.private_bytes(*encoding).decode("ascii")

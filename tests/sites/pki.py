"""A small certificate authority for the credential tests (no tests here): a CA, a server certificate for
127.0.0.1 and client certificates, made with `cryptography` once per test process."""

import base64
import datetime
import ipaddress
from functools import cache

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def _key_pem(key: ec.EllipticCurvePrivateKey) -> str:
    encoding = serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    return key.private_bytes(*encoding).decode()


def _cert_pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


@cache
def _ca() -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "edgefleet test CA")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def ca_pem() -> str:
    return _cert_pem(_ca()[0])


@cache
def issue(common_name: str, *, server: bool = False) -> tuple[str, str]:
    """(certificate PEM, key PEM) signed by the test CA; `server`: valid for 127.0.0.1."""
    ca_cert, ca_key = _ca()
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
    )
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False
        )
    return _cert_pem(builder.sign(ca_key, hashes.SHA256())), _key_pem(key)


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def kubeconfig(
    server: str = "https://10.1.2.3:6443",
    *,
    user: dict[str, object] | None = None,
    cluster_extra: dict[str, object] | None = None,
    ca: str | None = "default",
) -> str:
    """A kubeconfig of one cluster, one user and one context, as a K3s server writes it; `user` replaces
    the user's fields (a token by default), `cluster_extra` adds fields to the cluster."""
    cluster: dict[str, object] = {"server": server}
    if ca is not None:
        cluster["certificate-authority-data"] = b64(ca_pem() if ca == "default" else ca)
    cluster.update(cluster_extra or {})
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "default", "cluster": cluster}],
        "users": [{"name": "default", "user": user if user is not None else {"token": "kube-s3cret"}}],
        "contexts": [{"name": "default", "context": {"cluster": "default", "user": "default"}}],
        "current-context": "default",
        "preferences": {},
    }
    return yaml.safe_dump(doc, sort_keys=False)

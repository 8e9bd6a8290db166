"""Encryption at rest for cluster credentials, with rotatable Fernet keys (FLEET_SECRET_KEYS).

The first key encrypts; every key decrypts. To rotate: put a new key first, run
`manage.py rotate_secrets`, then drop the old key.
"""

import hashlib
from functools import cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured


@cache
def _fernet(keys: tuple[str, ...]) -> MultiFernet:
    try:
        return MultiFernet([Fernet(key.encode()) for key in keys])
    except ValueError as exc:
        raise ImproperlyConfigured("FLEET_SECRET_KEYS holds a value that is not a Fernet key") from exc


def fernet() -> MultiFernet:
    return _fernet(tuple(settings.FLEET_SECRET_KEYS))


def encrypt(plaintext: str) -> str:
    return fernet().encrypt(plaintext.encode()).decode()


def decrypt(token: str) -> str:
    try:
        return fernet().decrypt(token.encode()).decode()
    except InvalidToken as exc:
        raise ImproperlyConfigured("a stored secret cannot be decrypted with any key in FLEET_SECRET_KEYS") from exc


SETTING_PREFIX = "fernet:"


def setting_secret(value: str, name: str) -> str:
    """A secret given in a setting: as is, or decrypted when written `fernet:<token>` (manage.py
    encrypt_secret), so a .env file or a deployment's environment need not hold it in clear text."""
    if not value.startswith(SETTING_PREFIX):
        return value
    try:
        return fernet().decrypt(value[len(SETTING_PREFIX) :].encode()).decode()
    except InvalidToken as exc:
        raise ImproperlyConfigured(f"{name} cannot be decrypted with any key in FLEET_SECRET_KEYS") from exc


def rotate(token: str) -> str:
    """Re-encrypt under the first key (a no-op in effect when it already is)."""
    return fernet().rotate(token.encode()).decode()


def hash_secret(plaintext: str) -> str:
    """sha256 hex of a random secret (bootstrap token, node credential): what is stored and looked up.

    A fast hash is enough because the secrets are 256 random bits, not passwords a person chose.
    """
    return hashlib.sha256(plaintext.encode()).hexdigest()

"""API tokens for submitting to a leaderboard server: random, shown once, stored as a salted hash.

A token looks like ``lmlb_<key id>_<secret>``. The key id (12 hex digits) is stored in clear to
find the token's row; the secret (32 random bytes, URL-safe base64) is stored only as a salted
scrypt hash, so a leaked database does not leak working tokens. Tokens are issued by an admin with
``lm-envs leaderboard admin issue-token NAME`` and revoked with ``admin revoke-token NAME``.

Example:
    >>> token = new_token()
    >>> key_id, secret = parse_token(token.token)
    >>> key_id == token.key_id and verify_secret(secret, token.stored_hash)
    True
    >>> verify_secret("wrong", token.stored_hash)
    False
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

PREFIX = "lmlb_"
_TOKEN = re.compile(r"^lmlb_(?P<key_id>[0-9a-f]{12})_(?P<secret>[A-Za-z0-9_-]{20,100})$")
#: scrypt cost parameters (16 MiB of memory, tens of milliseconds per hash).
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1


@dataclass(frozen=True)
class NewToken:
    """A freshly issued token.

    Attributes:
        token: The full token: show it to its owner once, never store it.
        key_id: The public part that names the token's row.
        stored_hash: What the store keeps: ``scrypt$N$r$p$salt$hash``.
    """

    token: str
    key_id: str
    stored_hash: str


def hash_secret(secret: str, *, salt: bytes | None = None) -> str:
    """A salted scrypt hash of ``secret`` in the form ``scrypt$N$r$p$<salt hex>$<hash hex>``."""
    salt = secrets.token_bytes(16) if salt is None else salt
    digest = hashlib.scrypt(secret.encode("utf-8"), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=32)
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${salt.hex()}${digest.hex()}"


def verify_secret(secret: str, stored_hash: str) -> bool:
    """Whether ``secret`` hashes to ``stored_hash`` (constant-time comparison)."""
    try:
        scheme, n, r, p, salt_hex, digest_hex = stored_hash.split("$")
        if scheme != "scrypt":
            return False
        digest = hashlib.scrypt(
            secret.encode("utf-8"), salt=bytes.fromhex(salt_hex), n=int(n), r=int(r), p=int(p), dklen=32
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(digest.hex(), digest_hex)


def new_token() -> NewToken:
    """Generate a token with a fresh key id and secret, and its stored hash."""
    key_id = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    return NewToken(token=f"{PREFIX}{key_id}_{secret}", key_id=key_id, stored_hash=hash_secret(secret))


def parse_token(token: str) -> tuple[str, str]:
    """Split a token into ``(key_id, secret)``.

    Raises:
        ValueError: If ``token`` is not shaped like an issued token.
    """
    m = _TOKEN.match(token.strip())
    if not m:
        raise ValueError("not a leaderboard token (expected 'lmlb_<key id>_<secret>' as issued by the admin).")
    return m["key_id"], m["secret"]

"""Channel secrets at rest: Fernet (cryptography) under the key(s) of TRADEFLOW_NOTIFIER_SECRET_KEY.

Fernet is AES-128-CBC with an HMAC-SHA256 over the token: what is stored cannot be read or
altered without the key. Several keys (comma-separated) form a ``MultiFernet``: the first
encrypts, every one decrypts, so a key is rotated by putting the new one first (stored secrets
are re-encrypted under it when they are next written).
"""

from __future__ import annotations

import json

from cryptography.fernet import Fernet, InvalidToken, MultiFernet


class SecretsUnavailable(RuntimeError):
    """No key is configured: secrets cannot be stored."""


class SecretsUnreadable(RuntimeError):
    """Stored secrets do not decrypt under the configured keys (a key was removed?)."""


class SecretBox:
    def __init__(self, keys: list[str]) -> None:
        self._fernet = MultiFernet([Fernet(key) for key in keys]) if keys else None

    @property
    def can_encrypt(self) -> bool:
        return self._fernet is not None

    def encrypt(self, values: dict[str, str]) -> bytes:
        if self._fernet is None:
            raise SecretsUnavailable(
                "TRADEFLOW_NOTIFIER_SECRET_KEY is not set, so secrets given through the API cannot be stored "
                "encrypted; set it (`tradeflow notifier-key` makes one) or define the channel in "
                "TRADEFLOW_NOTIFIER_CHANNELS")
        return self._fernet.encrypt(json.dumps(values).encode())

    def decrypt(self, token: bytes) -> dict[str, str]:
        if self._fernet is None:
            raise SecretsUnreadable("TRADEFLOW_NOTIFIER_SECRET_KEY is not set")
        try:
            return json.loads(self._fernet.decrypt(token))
        except InvalidToken:
            raise SecretsUnreadable("stored secrets do not decrypt under TRADEFLOW_NOTIFIER_SECRET_KEY "
                                    "(was the key that encrypted them removed?)") from None

"""Key authentication: `Authorization: Bearer <primary or secondary key>`.

Both keys are always compared, in constant time, and every failure gets the same answer,
so a caller learns neither which part was wrong nor how much of a key matched. With a
keys file (a Kubernetes Secret mounted as a volume, or the local target's file), a
regenerated key takes effect without a restart: the file is re-read when it changes,
checked at most once a second.
"""

from __future__ import annotations

import hmac
import json
import os
import time

UNAUTHORIZED = "Unauthorized: send the header 'Authorization: Bearer <key>' with the service's primary or secondary key"


class KeyAuth:
    def __init__(self, enabled: bool, keys: tuple[str, ...], keys_file: str = "") -> None:
        self.enabled = enabled
        self.keys_file = keys_file
        self._keys = [k.encode() for k in keys]
        self._mtime = 0.0
        self._checked = 0.0
        self._reload()

    def _reload(self) -> None:
        if not self.keys_file:
            return
        try:
            mtime = os.stat(self.keys_file).st_mtime
            if mtime == self._mtime:
                return
            with open(self.keys_file, encoding="utf-8") as f:
                data = json.load(f)
            keys = [k.encode() for k in (data.get("primary_key", ""), data.get("secondary_key", "")) if k]
        except (OSError, ValueError, AttributeError, RecursionError):  # AttributeError: not an object, or a key not a string
            return  # keep the keys we have: a half-written file must not lock everybody out
        self._keys = keys
        self._mtime = mtime

    def allows(self, authorization: bytes) -> bool:
        if not self.enabled:
            return True
        now = time.monotonic()
        if self.keys_file and now - self._checked > 1.0:
            self._checked = now
            self._reload()
        scheme, _, presented = authorization.partition(b" ")
        ok = False
        for key in self._keys or [b"\0"]:  # no key configured: compare anyway, never match
            ok |= hmac.compare_digest(presented.strip(), key)
        return ok and scheme.lower() == b"bearer" and bool(self._keys)

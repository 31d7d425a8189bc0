"""Store URIs: which kind of store a URI names, and the same URI with its secrets masked.

    mask("postgresql://me:s3cret@db/ws")   # 'postgresql://me:***@db/ws'
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from ..errors import UserError

DATABASE_SCHEMES = ("sqlite", "postgresql", "postgres", "postgresql+psycopg")
OBJECT_SCHEMES = {"s3": "s3", "s3a": "s3", "az": "azure", "abfs": "azure", "abfss": "azure"}
_SECRET_PARAMS = re.compile(r"(password|secret|key|token|sig|signature|credential)", re.IGNORECASE)
MAX_URI = 4096


def scheme(uri: str) -> str:
    return urlsplit(uri).scheme.lower() if "://" in uri else ""


def is_database(uri: str) -> bool:
    return scheme(uri) in DATABASE_SCHEMES


def is_object_store(uri: str) -> bool:
    return scheme(uri) in OBJECT_SCHEMES


def mask(uri: str) -> str:
    """The URI with its password and any secret-looking query value replaced by ***; safe to print."""
    if "://" not in uri:
        return uri
    parts = urlsplit(uri)
    netloc = parts.netloc
    if "@" in netloc:
        credentials, _, host = netloc.rpartition("@")
        if ":" in credentials:
            credentials = credentials.split(":", 1)[0] + ":***"
        netloc = f"{credentials}@{host}"
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    masked = [(k, "***" if _SECRET_PARAMS.search(k) else v) for k, v in pairs]
    if netloc == parts.netloc and masked == pairs:
        return uri  # nothing to hide: as given (urlunsplit would turn sqlite:////x into sqlite://x)
    return urlunsplit((parts.scheme, netloc, parts.path, urlencode(masked), parts.fragment))


def secret_in(uri: str) -> bool:
    """Whether the URI itself carries a password or a secret query value (a config file may not hold one)."""
    return "://" in uri and mask(uri) != uri


def checked(uri: object, what: str) -> str:
    """A store URI or folder as given, or a one-line UserError (type, length, NUL, an unknown scheme)."""
    if not isinstance(uri, str) or not uri or len(uri) > MAX_URI or "\0" in uri:
        raise UserError(f"the workspace's {what} must be a URI or folder of at most {MAX_URI} characters, got {uri!r:.80}")
    known = DATABASE_SCHEMES if what == "metadata" else (*OBJECT_SCHEMES, "file")
    if "://" in uri and scheme(uri) not in known:
        raise UserError(f"the workspace's {what} {mask(uri)!r} has an unknown scheme; use one of {', '.join(known)}")
    if what == "metadata" and "://" not in uri:
        raise UserError(f"the workspace's metadata must be a database URI (sqlite:///… or postgresql://…), got {uri!r:.80}")
    return uri

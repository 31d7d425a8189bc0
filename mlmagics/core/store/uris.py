"""Store URIs: which kind of store a URI names, and the same URI with its secrets masked.

    mask("postgresql://me:s3cret@db/ws")   # 'postgresql://me:***@db/ws'
    scrub("... http://host/c/b?sv=…&sig=abc ...")   # the same text, 'sig=***'

A password is masked where *either* reading of a URI finds one: SQLAlchemy's (the password runs
from the first ':' to the next '@', so it may hold '/', '?' or '#') and urllib's (the user info
ends at the last '@' before the first '/', '?' or '#'). Error texts of the storage libraries are
scrubbed the same way before they are shown: URLs in them, `key=value` pairs with a secret-looking
key, and the secrets the process's environment gives those libraries (PGPASSWORD, AWS_*, AZURE_*).
"""

from __future__ import annotations

import os
import re
from urllib.parse import unquote

from ..errors import UserError

DATABASE_SCHEMES = ("sqlite", "postgresql", "postgres", "postgresql+psycopg")
OBJECT_SCHEMES = {"s3": "s3", "s3a": "s3", "az": "azure", "abfs": "azure", "abfss": "azure"}
_SECRET_WORDS = r"password|passwd|pwd|secret|key|token|sig|signature|credential"
_SECRET_PARAMS = re.compile(f"({_SECRET_WORDS})", re.IGNORECASE)
MAX_URI = 4096
HIDDEN = "***"

_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*)://")
_SQLALCHEMY_USERINFO = re.compile(r"[^:/]*:([^@]*)@")  # SQLAlchemy's URL pattern: user, ':' password, '@'
_QUERY_PAIR = re.compile(r"(^|[&;])([^=&;]*)=([^&;]*)")
# in free text (an error message): URLs, and key=value pairs whose key looks secret (connection strings, SAS tokens)
_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://[^\s'\"<>`]+")
_SECRET_PAIR_IN_TEXT = re.compile(rf"(?i)([\w.\-]*(?:{_SECRET_WORDS})[\w.\-]*=)([^\s&;,'\"<>`]+)")
# environment variables whose values the storage libraries use as secrets (libpq, botocore, adlfs / azure-identity)
SECRET_ENVIRONMENT = (
    "PGPASSWORD",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AZURE_STORAGE_KEY",
    "AZURE_STORAGE_ACCOUNT_KEY",
    "AZURE_STORAGE_SAS_TOKEN",
    "AZURE_STORAGE_CLIENT_SECRET",
    "AZURE_CLIENT_SECRET",
)
_CONNECTION_STRING_SECRETS = re.compile(r"(?i)(?:AccountKey|SharedAccessSignature|SharedAccessKey)=([^;]+)")
_MIN_SECRET = 4  # shorter values are not searched for in texts (they would mask ordinary words)


def scheme(uri: str) -> str:
    found = _SCHEME.match(uri)
    return found.group(1).lower() if found else ""


def is_object_store(uri: str) -> bool:
    return scheme(uri) in OBJECT_SCHEMES


def _password_span(uri: str) -> tuple[int, int] | None:
    """Where the password of `uri` is, as SQLAlchemy or urllib would read it (the union of both); None if none."""
    found = _SCHEME.match(uri)
    if not found:
        return None
    start = found.end()
    rest = uri[start:]
    spans = []
    sqlalchemy = _SQLALCHEMY_USERINFO.match(rest)
    if sqlalchemy:
        spans.append(sqlalchemy.span(1))
    netloc = re.split(r"[/?#]", rest, maxsplit=1)[0]
    userinfo = netloc[: netloc.rfind("@")] if "@" in netloc else ""
    if ":" in userinfo:
        spans.append((userinfo.index(":") + 1, len(userinfo)))
    if not spans:
        return None
    return start + min(s for s, _ in spans), start + max(e for _, e in spans)


def _query_start(uri: str, after: int) -> int:
    """Index of the query's first character ('?' excluded), -1 when there is none; SQLAlchemy's rule: the
    first '?' after the user info, the rest of the text included ('#' does not end it)."""
    mark = uri.find("?", after)
    return -1 if mark < 0 else mark + 1


def mask(uri: str) -> str:
    """The URI with its password and any secret-looking query value replaced by ***; safe to print."""
    if not isinstance(uri, str) or not _SCHEME.match(uri):
        return uri
    span = _password_span(uri)
    masked = uri if span is None else f"{uri[: span[0]]}{HIDDEN}{uri[span[1] :]}"
    after = _SCHEME.match(masked).end() if span is None else span[0] + len(HIDDEN)  # type: ignore[union-attr]
    query = _query_start(masked, after)
    if query < 0:
        return masked

    def hide(pair: re.Match[str]) -> str:
        return f"{pair.group(1)}{pair.group(2)}={HIDDEN}" if _SECRET_PARAMS.search(pair.group(2)) else pair.group(0)

    return masked[:query] + _QUERY_PAIR.sub(hide, masked[query:])


def secret_in(uri: str) -> bool:
    """Whether the URI itself carries a password or a secret query value (a config file may not hold one)."""
    return isinstance(uri, str) and mask(uri) != uri


def without_secrets(uri: str) -> str:
    """The URI with no password (nor the ':' before it) and no secret query value: what may be written to a file."""
    if not secret_in(uri):
        return uri
    span = _password_span(uri)
    bare = uri if span is None else uri[: span[0] - 1] + uri[span[1] :]
    query = _query_start(bare, 0 if span is None else span[0] - 1)
    if query < 0:
        return bare
    kept = [p.group(0).lstrip("&;") for p in _QUERY_PAIR.finditer(bare[query:]) if not _SECRET_PARAMS.search(p.group(2))]
    return bare[:query] + "&".join(kept) if kept else bare[: query - 1]


def secrets_of(uri: str) -> list[str]:
    """The secret values a URI carries (its password, secret query values), to scrub from error texts."""
    found = []
    span = _password_span(uri)
    if span is not None:
        password = uri[span[0] : span[1]]
        found += [password, *password.split("@")]
    query = _query_start(uri, 0 if span is None else span[1])
    if query >= 0:
        found += [p.group(3) for p in _QUERY_PAIR.finditer(uri[query:]) if _SECRET_PARAMS.search(p.group(2))]
    found += [unquote(s) for s in found]  # as the libraries read them, and may echo them
    return sorted({s for s in found if len(s) >= _MIN_SECRET})


def environment_secrets() -> list[str]:
    """The secrets this process's environment hands the storage libraries."""
    found = [os.environ.get(name, "") for name in SECRET_ENVIRONMENT]
    connection_string = os.environ.get("AZURE_STORAGE_CONNECTION_STRING", "")
    for value in _CONNECTION_STRING_SECRETS.findall(connection_string):
        found += [value, *(p.group(3) for p in _QUERY_PAIR.finditer(value.lstrip("?")))]
    return [s for s in found if len(s) >= _MIN_SECRET]


def scrub(text: str, secrets: list[str] | tuple[str, ...] = ()) -> str:
    """`text` (an error message of a storage library) with what could be a secret replaced by ***: URLs masked,
    `key=value` pairs with a secret-looking key, and the given and environment secrets wherever they appear."""
    text = _URL_IN_TEXT.sub(lambda url: mask(url.group(0)), text)
    text = _SECRET_PAIR_IN_TEXT.sub(lambda pair: pair.group(1) + HIDDEN, text)
    for secret in sorted({*secrets, *environment_secrets()}, key=len, reverse=True):
        if len(secret) >= _MIN_SECRET:
            text = text.replace(secret, HIDDEN)
    return text


def checked(uri: object, what: str) -> str:
    """A store URI or folder as given, or a one-line UserError (type, length, NUL, an unknown scheme, a
    database password holding an '@', an object store without a bucket)."""
    if not isinstance(uri, str) or not uri or len(uri) > MAX_URI or "\0" in uri:
        shown = mask(uri) if isinstance(uri, str) else uri
        raise UserError(f"the workspace's {what} must be a URI or folder of at most {MAX_URI} characters, got {shown!r:.80}")
    known = DATABASE_SCHEMES if what == "metadata" else (*OBJECT_SCHEMES, "file")
    if "://" in uri and scheme(uri) not in known:
        raise UserError(f"the workspace's {what} {mask(uri)!r:.300} has an unknown scheme; use one of {', '.join(known)}")
    if what == "metadata" and "://" not in uri:  # no scheme, so no mask: what could be a user:password@ goes
        shown = re.sub(r":[^@]*@", f":{HIDDEN}@", uri)
        raise UserError(f"the workspace's metadata must be a database URI (sqlite:///… or postgresql://…), got {shown!r:.80}")
    span = _password_span(uri)
    if span is not None and "@" in uri[span[0] : span[1]]:  # SQLAlchemy would take the rest of it for the host
        raise UserError(f"the password in the workspace's {what} URI {mask(uri)!r:.300} holds an '@': write it as %40")
    if is_object_store(uri) and not re.match(r"[^/?#]+", uri[_SCHEME.match(uri).end() :]):  # type: ignore[union-attr]
        raise UserError(f"the workspace's artifacts {mask(uri)!r:.300} names no bucket or container, e.g. s3://bucket/prefix")
    return uri

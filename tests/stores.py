"""Fresh, isolated stores for the team workspace's tests, on the servers `.ci/services.sh` starts on 127.0.0.1:
PostgreSQL (55432), an S3 endpoint (moto, 5005) and Azure Blob (Azurite, 10000).

Each fixture makes a store of its own for one test, sets with monkeypatch the environment a client needs to reach it
(and clears what would send that client elsewhere), and removes the store afterwards:

- `postgres_uri`: ``postgresql://mlmagics@127.0.0.1:55432/<new database>``; the password only in ``PGPASSWORD``
- `s3_uri`: ``s3://<new bucket>/ws``; ``AWS_ENDPOINT_URL`` and moto's test credentials in ``AWS_*``
- `azure_uri`: ``az://<new container>/ws``; ``AZURE_STORAGE_CONNECTION_STRING`` for Azurite's development account

A conftest.py (or a test module) imports the fixtures it wants: ``from tests.stores import postgres_uri``. A test that
needs a second store of a kind enters the context manager under the fixture (`fresh_postgres_database`,
`fresh_s3_bucket`, `fresh_azure_container`). When a server is not answering, `require_service` skips the test, or fails
it under CI=true, in one line that names ``sudo bash .ci/services.sh``.

The client libraries (psycopg, boto3, azure-storage-blob: the [team] and [test] extras) are imported on first use, so
importing this module costs nothing.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import socket
import uuid
from collections.abc import Iterator

import pytest

# -- the servers (.ci/services.sh) ----------------------------------------------------------------------------------
POSTGRES_HOST, POSTGRES_PORT = "127.0.0.1", 55432
POSTGRES_USER = "mlmagics"
POSTGRES_DATABASE = "mlmagics"  # the role's own database: where the fixtures connect to create and drop the others
POSTGRES_PASSWORD = "mlmagics-test"  # a test password of a throwaway cluster that listens on 127.0.0.1 only

S3_ENDPOINT = "http://127.0.0.1:5005"
S3_ENV = {
    "AWS_ENDPOINT_URL": S3_ENDPOINT,
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    # no ~/.aws/config or credentials file of the developer's (a profile, an endpoint_url, an addressing style)
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
}
S3_ENV_CLEARED = (  # each would take precedence over S3_ENV, or add to it
    "AWS_ENDPOINT_URL_S3",
    "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS",
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_REGION",
)

# Azurite's well-known development account (its documentation's, the same in every Azurite): not a secret.
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
AZURITE_BLOB_ENDPOINT = f"http://127.0.0.1:10000/{AZURITE_ACCOUNT}"
AZURE_CONNECTION_STRING = (
    f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};BlobEndpoint={AZURITE_BLOB_ENDPOINT};"
)
AZURE_ENV_CLEARED = (  # adlfs reads each of these too
    "AZURE_STORAGE_ACCOUNT_NAME",
    "AZURE_STORAGE_ACCOUNT_KEY",
    "AZURE_STORAGE_SAS_TOKEN",
    "AZURE_STORAGE_CLIENT_ID",
    "AZURE_STORAGE_CLIENT_SECRET",
    "AZURE_STORAGE_TENANT_ID",
    "AZURE_STORAGE_ANON",
)

# name -> (what it is, host, port, how to probe it: "tcp" connects, "http" wants any HTTP answer)
SERVICES: dict[str, tuple[str, str, int, str]] = {
    "postgres": ("PostgreSQL", POSTGRES_HOST, POSTGRES_PORT, "tcp"),
    "s3": ("the S3 endpoint (moto)", "127.0.0.1", 5005, "http"),
    "azure": ("Azure Blob (Azurite)", "127.0.0.1", 10000, "http"),
}


def _answers(host: str, port: int, probe: str) -> bool:
    try:
        if probe == "http":
            conn = http.client.HTTPConnection(host, port, timeout=3)
            try:
                conn.request("GET", "/")
                conn.getresponse().read()
            finally:
                conn.close()
        else:
            with socket.create_connection((host, port), timeout=3):
                pass
    except (OSError, http.client.HTTPException):
        return False
    return True


def require_service(name: str) -> None:
    """Skip the test when the server `name` (a key of SERVICES) is not answering; under CI=true, fail it, since CI
    starts every one of them (.ci/run) and a skip there would hide that one went missing."""
    what, host, port, probe = SERVICES[name]
    if _answers(host, port, probe):
        return
    reason = f"{what} is not answering on {host}:{port}: start it with `sudo bash .ci/services.sh`"
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"CI=true but {reason}", pytrace=False)
    pytest.skip(reason)


def _fresh_name(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:16]}"


# -- PostgreSQL: a database per test ----------------------------------------------------------------------------------
def _postgres_admin():
    import psycopg

    return psycopg.connect(
        host=POSTGRES_HOST,
        port=POSTGRES_PORT,
        user=POSTGRES_USER,
        password=POSTGRES_PASSWORD,
        dbname=POSTGRES_DATABASE,
        autocommit=True,
        connect_timeout=5,
    )


@contextlib.contextmanager
def fresh_postgres_database() -> Iterator[str]:
    """A new, empty database owned by `mlmagics`, as a URI without a password; dropped on exit, with whatever is
    still connected to it."""
    from psycopg import sql

    name = _fresh_name("mlmagics_test_")
    with _postgres_admin() as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield f"postgresql://{POSTGRES_USER}@{POSTGRES_HOST}:{POSTGRES_PORT}/{name}"
    finally:
        with _postgres_admin() as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture
def postgres_uri(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """``postgresql://mlmagics@127.0.0.1:55432/<a new database>``, dropped after the test; the password is in
    ``PGPASSWORD`` alone (libpq, and so psycopg and SQLAlchemy's psycopg dialect, read it)."""
    require_service("postgres")
    monkeypatch.setenv("PGPASSWORD", POSTGRES_PASSWORD)
    with fresh_postgres_database() as uri:
        yield uri


# -- S3 (moto): a bucket per test -------------------------------------------------------------------------------------
def _s3_client():
    import boto3

    return boto3.session.Session(
        aws_access_key_id=S3_ENV["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=S3_ENV["AWS_SECRET_ACCESS_KEY"],
        region_name=S3_ENV["AWS_DEFAULT_REGION"],
    ).client("s3", endpoint_url=S3_ENDPOINT)


@contextlib.contextmanager
def fresh_s3_bucket() -> Iterator[str]:
    """``s3://<a new bucket>/ws`` on moto; on exit the bucket is emptied and deleted."""
    with contextlib.closing(_s3_client()) as client:  # closed even when the cleanup fails
        bucket = _fresh_name("mlmagics-test-")
        client.create_bucket(Bucket=bucket)
        try:
            yield f"s3://{bucket}/ws"
        finally:
            for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
                keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
                if keys:
                    client.delete_objects(Bucket=bucket, Delete={"Objects": keys, "Quiet": True})
            client.delete_bucket(Bucket=bucket)


@pytest.fixture
def s3_uri(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """``s3://<a new bucket>/ws`` on moto, deleted after the test, with ``AWS_ENDPOINT_URL`` and moto's test
    credentials in the environment: botocore, boto3 and s3fs (``fsspec.filesystem("s3")``) reach it from that alone."""
    require_service("s3")
    for var in S3_ENV_CLEARED:
        monkeypatch.delenv(var, raising=False)
    for var, value in S3_ENV.items():
        monkeypatch.setenv(var, value)
    with fresh_s3_bucket() as uri:
        yield uri


# -- Azure Blob (Azurite): a container per test -------------------------------------------------------------------------
@contextlib.contextmanager
def fresh_azure_container() -> Iterator[str]:
    """``az://<a new container>/ws`` on Azurite; deleted, with its blobs, on exit."""
    from azure.storage.blob import BlobServiceClient

    with BlobServiceClient.from_connection_string(AZURE_CONNECTION_STRING) as service:
        container = _fresh_name("mlmagics-test-")
        service.create_container(container)
        try:
            yield f"az://{container}/ws"
        finally:
            service.delete_container(container)


@pytest.fixture
def azure_uri(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """``az://<a new container>/ws`` on Azurite, deleted after the test, with ``AZURE_STORAGE_CONNECTION_STRING`` (the
    development account, ``BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1``) in the environment: adlfs
    (``fsspec.filesystem("az")``) reaches it from that alone."""
    require_service("azure")
    for var in AZURE_ENV_CLEARED:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", AZURE_CONNECTION_STRING)
    with fresh_azure_container() as uri:
        yield uri

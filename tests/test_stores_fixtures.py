"""tests/stores.py's fixtures give each test a working store of its own on the real servers (.ci/services.sh), reachable
by the clients from the environment the fixture sets alone, and remove it afterwards."""

from __future__ import annotations

import os
from urllib.parse import urlsplit

import pytest

from tests import stores
from tests.stores import fresh_azure_container, fresh_postgres_database, fresh_s3_bucket

# the fixtures under test, brought in as a conftest.py would (assigned, not imported: the tests' parameters name them)
postgres_uri = stores.postgres_uri
s3_uri = stores.s3_uri
azure_uri = stores.azure_uri

pytestmark = pytest.mark.stores

# the URIs earlier tests in this session were given: a fixture hands each test a store no other test had
_seen: set[str] = set()


def _first_time(uri: str) -> bool:
    new = uri not in _seen
    _seen.add(uri)
    return new


def _split(uri: str) -> tuple[str, str]:
    """s3://bucket/ws or az://container/ws -> (bucket or container, "ws")."""
    parts = urlsplit(uri)
    return parts.netloc, parts.path.lstrip("/")


# -- PostgreSQL --------------------------------------------------------------------------------------------------------
def _database(uri: str) -> str:
    return urlsplit(uri).path.lstrip("/")


def test_postgres_uri_has_no_password_and_pgpassword_lets_it_in(postgres_uri, monkeypatch):
    import psycopg

    parts = urlsplit(postgres_uri)
    assert (parts.scheme, parts.username, parts.hostname, parts.port) == ("postgresql", "mlmagics", "127.0.0.1", 55432)
    assert parts.password is None
    monkeypatch.setenv("PGPASSFILE", os.devnull)  # no ~/.pgpass: the password can only come from PGPASSWORD
    with psycopg.connect(postgres_uri, connect_timeout=5) as conn:
        assert conn.execute("select current_user").fetchone() == ("mlmagics",)


@pytest.mark.parametrize("run", [1, 2])
def test_postgres_sql_round_trip_in_an_empty_database_of_its_own(postgres_uri, run):
    import psycopg

    assert _first_time(postgres_uri)
    with psycopg.connect(postgres_uri, connect_timeout=5) as conn:  # the password from PGPASSWORD
        assert conn.execute("select current_database(), current_user").fetchone() == (_database(postgres_uri), "mlmagics")
        assert conn.execute("select count(*) from pg_tables where schemaname = 'public'").fetchone() == (0,)
        conn.execute("create table runs (id int primary key, note text)")
        conn.execute("insert into runs values (%s, %s)", (run, f"run {run}"))
    with psycopg.connect(postgres_uri, connect_timeout=5) as conn:
        assert conn.execute("select id, note from runs").fetchall() == [(run, f"run {run}")]


def test_postgres_refuses_a_wrong_password_and_none(postgres_uri, monkeypatch):
    import psycopg

    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(postgres_uri, password="not-the-password", connect_timeout=5)
    monkeypatch.delenv("PGPASSWORD")
    monkeypatch.setenv("PGPASSFILE", os.devnull)
    with pytest.raises(psycopg.OperationalError, match="no password supplied"):
        psycopg.connect(postgres_uri, connect_timeout=5)


def test_postgres_databases_are_distinct_and_dropped_afterwards(postgres_uri):
    import psycopg

    with fresh_postgres_database() as other:
        assert _database(other) != _database(postgres_uri)
        with psycopg.connect(other, connect_timeout=5) as conn:
            conn.execute("create table only_here (x int)")
        with psycopg.connect(postgres_uri, connect_timeout=5) as conn:
            assert conn.execute("select to_regclass('only_here')").fetchone() == (None,)
            held_open = psycopg.connect(other, connect_timeout=5)  # dropping must not wait for it
    try:
        with psycopg.connect(postgres_uri, connect_timeout=5) as conn:
            assert conn.execute("select 1 from pg_database where datname = %s", (_database(other),)).fetchone() is None
    finally:
        held_open.close()


# -- S3 (moto) ----------------------------------------------------------------------------------------------------------
def test_s3_clients_reach_moto_from_the_environment_alone(s3_uri):
    import boto3
    import fsspec

    # botocore itself reads AWS_ENDPOINT_URL (and AWS_ENDPOINT_URL_S3), and so does s3fs through aiobotocore
    assert boto3.client("s3").meta.endpoint_url == stores.S3_ENDPOINT
    fs = fsspec.filesystem("s3", skip_instance_cache=True)  # no endpoint, no keys: AWS_* alone
    fs.pipe(f"{s3_uri}/hello.txt", b"hello from s3fs")
    assert fs.cat(f"{s3_uri}/hello.txt") == b"hello from s3fs"
    bucket, prefix = _split(s3_uri)
    body = stores._s3_client().get_object(Bucket=bucket, Key=f"{prefix}/hello.txt")["Body"].read()
    assert body == b"hello from s3fs"  # in moto, read with an explicit endpoint


# -- Azure Blob (Azurite) -----------------------------------------------------------------------------------------------
def test_azure_clients_reach_azurite_from_the_connection_string_alone(azure_uri):
    import fsspec
    from azure.storage.blob import BlobServiceClient

    fs = fsspec.filesystem("az", skip_instance_cache=True)  # adlfs reads AZURE_STORAGE_CONNECTION_STRING itself
    fs.pipe(f"{azure_uri}/hello.txt", b"hello from adlfs")
    assert fs.cat(f"{azure_uri}/hello.txt") == b"hello from adlfs"
    container, prefix = _split(azure_uri)
    with BlobServiceClient.from_connection_string(os.environ["AZURE_STORAGE_CONNECTION_STRING"]) as service:
        assert service.url.rstrip("/") == stores.AZURITE_BLOB_ENDPOINT
        blob = service.get_blob_client(container, f"{prefix}/hello.txt")
        assert blob.download_blob().readall() == b"hello from adlfs"


# -- S3 and Azure Blob: the same promises for a bucket and a container --------------------------------------------------
def _assert_s3_bucket_gone(bucket: str) -> None:
    import botocore.exceptions

    with pytest.raises(botocore.exceptions.ClientError, match="404|Not Found|NoSuchBucket"):
        stores._s3_client().head_bucket(Bucket=bucket)  # in moto, asked with an explicit endpoint


def _assert_azure_container_gone(container: str) -> None:
    from azure.storage.blob import BlobServiceClient

    with BlobServiceClient.from_connection_string(stores.AZURE_CONNECTION_STRING) as service:
        assert not service.get_container_client(container).exists()


# kind -> (its fixture, its fsspec protocol, its fresh_* context manager, the check that a bucket or container is gone)
_OBJECT_STORES = {
    "s3": ("s3_uri", "s3", fresh_s3_bucket, _assert_s3_bucket_gone),
    "azure": ("azure_uri", "az", fresh_azure_container, _assert_azure_container_gone),
}


@pytest.fixture(params=sorted(_OBJECT_STORES))
def object_store(request):
    """s3_uri, then azure_uri: (the URI, an fsspec filesystem configured from the environment alone, the kind's fresh_*
    context manager, the kind's check that a bucket or container is gone)."""
    import fsspec

    fixture, protocol, fresh, assert_gone = _OBJECT_STORES[request.param]
    uri = request.getfixturevalue(fixture)
    return uri, fsspec.filesystem(protocol, skip_instance_cache=True), fresh, assert_gone


@pytest.mark.parametrize("run", [1, 2])
def test_bucket_or_container_is_new_and_empty_for_each_test(object_store, run):
    uri, fs, _, _ = object_store
    assert _first_time(uri)
    assert fs.ls(_split(uri)[0]) == []
    fs.pipe(f"{uri}/marker", str(run).encode())  # the next test would see it, were the store shared


def test_buckets_or_containers_are_distinct_and_deleted_afterwards(object_store):
    uri, fs, fresh, assert_gone = object_store
    with fresh() as other:
        assert _split(other)[0] != _split(uri)[0]
        fs.pipe(f"{other}/only-here", b"x")
        assert not fs.exists(f"{uri}/only-here")
    assert_gone(_split(other)[0])  # though it was not empty


# -- a server that is not answering -------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(stores.SERVICES))
def test_require_service_skips_or_fails_under_ci_naming_the_script(name, monkeypatch, free_port):
    what, host, _, probe = stores.SERVICES[name]
    monkeypatch.setitem(stores.SERVICES, name, (what, host, free_port(), probe))
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match=r"not answering .*: start it with `sudo bash \.ci/services\.sh`$"):
        stores.require_service(name)
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match=r"^CI=true but .*sudo bash \.ci/services\.sh"):
        stores.require_service(name)

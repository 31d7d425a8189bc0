"""Where a workspace keeps what it holds: two stores, each named by a URI.

    metadata   sqlite:////home/me/.mlmagics/workspace.db   (the default: a file beside the artifacts)
               postgresql://me@db.example/mlmagics          (a team's: SQLAlchemy + psycopg)
    artifacts  /home/me/.mlmagics/artifacts                 (a folder)
               s3://bucket/prefix, az://container/prefix   (a team's: fsspec with s3fs / adlfs)

`metadata.py` opens the database and keeps its schema current (Alembic, `migrations/`);
`artifacts.py` stores models and image snapshots once per content; `uris.py` reads the URIs
and masks what must not be shown. No password is ever written into a URI kept on disk.
"""

"""Alembic's entry point for the workspace schema. mlmagics runs it itself (store/metadata.py), on the
connection of a write transaction it holds: migrations run under the workspace's write lock.

To add a migration: `alembic -c mlmagics/core/store/migrations/alembic.ini revision -m "what"` writes
the file; then set SCHEMA_HEAD and KNOWN_REVISIONS in store/metadata.py (a test checks they agree)."""

from alembic import context

connection = context.config.attributes.get("connection")
if connection is None:
    raise SystemExit("the workspace schema is upgraded by mlmagics itself, when a workspace is opened")
context.configure(connection=connection, render_as_batch=connection.dialect.name == "sqlite")
with context.begin_transaction():
    context.run_migrations()

"""The schema of the folder workspaces before Alembic (mlmagics 0.1): created where missing.

A workspace made by mlmagics 0.1 has these tables already (and no alembic_version): they are kept
as they are, and copies of services' keys that versions before 0.1 kept in a service's config
are dropped (keys live in the `keys` column only).

Revision ID: 0001
Revises:
"""

import json

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _text(name: str) -> sa.Column:
    return sa.Column(name, sa.Text(), nullable=False)


def _versioned(*columns: sa.Column) -> tuple[sa.Column, ...]:
    return (
        sa.Column("name", sa.Text(), primary_key=True),
        sa.Column("version", sa.Integer(), primary_key=True, autoincrement=False),
        *columns,
    )


def upgrade() -> None:
    existing = set(sa.inspect(op.get_bind()).get_table_names())
    tables = {
        "counters": (
            sa.Column("kind", sa.Text(), primary_key=True),
            sa.Column("name", sa.Text(), primary_key=True),
            sa.Column("last", sa.Integer(), nullable=False),
        ),
        "models": _versioned(
            sa.Column("description", sa.Text()),
            _text("tags"),
            _text("properties"),
            _text("created_time"),
            _text("digest"),
            _text("artifact"),
            sa.Column("size", sa.BigInteger(), nullable=False),
            sa.Column("source", sa.Text()),
            sa.Column("framework", sa.Text()),
            sa.Column("framework_version", sa.Text()),
        ),
        "images": _versioned(
            sa.Column("description", sa.Text()),
            _text("tags"),
            _text("properties"),
            _text("created_time"),
            _text("state"),
            _text("models"),
            _text("spec"),
            sa.Column("error", sa.Text()),
            sa.Column("build", sa.Text(), nullable=False, server_default="{}"),
        ),
        "services": (
            sa.Column("name", sa.Text(), primary_key=True),
            _text("compute_type"),
            _text("image_id"),
            _text("state"),
            _text("config"),
            sa.Column("scoring_uri", sa.Text()),
            sa.Column("swagger_uri", sa.Text()),
            _text("keys"),
            sa.Column("description", sa.Text()),
            _text("tags"),
            _text("properties"),
            _text("created_time"),
            _text("updated_time"),
            sa.Column("error", sa.Text()),
            sa.Column("target", sa.Text(), nullable=False, server_default="{}"),
        ),
        "datasets": _versioned(
            _text("definition"),
            sa.Column("description", sa.Text()),
            _text("tags"),
            _text("created_time"),
        ),
        "environments": _versioned(
            _text("definition"),
            _text("created_time"),
        ),
    }
    for name, columns in tables.items():
        if name not in existing:
            op.create_table(name, *columns)
    if "services" in existing:
        _scrub_keys_from_configs()


def _scrub_keys_from_configs() -> None:
    bind = op.get_bind()
    for name, config in bind.execute(sa.text("SELECT name, config FROM services")).all():
        values = json.loads(config or "{}")
        if isinstance(values, dict) and ("primary_key" in values or "secondary_key" in values):
            values.pop("primary_key", None)
            values.pop("secondary_key", None)
            bind.execute(
                sa.text("UPDATE services SET config=:config WHERE name=:name"),
                {"config": json.dumps(values, sort_keys=True), "name": name},
            )

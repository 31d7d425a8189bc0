"""A team's workspace: who made each model, image and service, and from where; the workspace's own id;
image snapshots in the artifact store; an index to find the models that use an artifact.

Revision ID: 0002
Revises: 0001
"""

import uuid

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for table in ("models", "images", "services"):
        op.add_column(table, sa.Column("created_by", sa.Text(), nullable=False, server_default="{}"))
    op.add_column("images", sa.Column("snapshot", sa.Text(), nullable=True))  # the artifact of `app/`, in a shared store
    op.create_index("ix_models_digest", "models", ["digest"])
    workspace = op.create_table(
        "workspace",
        sa.Column("key", sa.Text(), primary_key=True),
        sa.Column("value", sa.Text(), nullable=False),
    )
    op.bulk_insert(workspace, [{"key": "id", "value": uuid.uuid4().hex}])

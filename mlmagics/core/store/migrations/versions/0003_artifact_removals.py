"""Artifacts being removed from a shared store, so a registration checks one row under the write lock instead
of listing the store: a delete or a sweep records the digest here (committed) before it removes any object, and
forgets it, counting the removal in `counters` ('artifacts', 'removed'), in the transaction that removed them.
Clients before this revision do neither, so they are refused from here on (the schema is newer than they know).

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "artifact_removals",
        sa.Column("digest", sa.Text(), primary_key=True),
        sa.Column("since", sa.Text(), nullable=False),
    )

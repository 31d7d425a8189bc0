"""Which stored chunks each artifact of a shared store is made of: from this revision on an artifact's files are stored as
content-addressed chunks (`chunks/<sha256>`, shared by every artifact holding the same bytes), so removing an
artifact removes only the chunks no other artifact names. A registration records its chunks in the transaction
that records its row. Clients before this revision neither read nor record chunks, so they are refused from here
on (the schema is newer than they know).

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "artifact_chunks",
        sa.Column("chunk", sa.Text(), nullable=False),
        sa.Column("digest", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("chunk", "digest"),
    )
    op.create_index("ix_artifact_chunks_digest", "artifact_chunks", ["digest"])

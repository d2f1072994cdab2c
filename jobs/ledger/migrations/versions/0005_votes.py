"""votes: each user's 👍 or 👎 on a forecast (the buttons under every answer and every digest analysis), one per
user and forecast (see jobs.ledger.models.Vote). Empty when made.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "votes",
        sa.Column("forecast_id", sa.String(200), sa.ForeignKey("forecasts.id", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("user", sa.String(64), primary_key=True),
        sa.Column("vote", sa.String(8), nullable=False),
        sa.Column("channel", sa.String(64), nullable=True),
        sa.Column("voted_at", sa.String(40), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("votes")

"""watchlists: each channel's own list of tickers (`/watch add NVDA AMD`), which its weekly digest and its
`/digest` cover instead of the Dow30 (see jobs.ledger.models.WatchlistEntry). Empty when made: every channel
keeps the Dow30 until someone adds a name.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "watchlists",
        sa.Column("channel", sa.String(64), primary_key=True),
        sa.Column("ticker", sa.String(16), primary_key=True),
        sa.Column("added_by", sa.String(64), nullable=True),
        sa.Column("added_at", sa.String(40), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("watchlists")

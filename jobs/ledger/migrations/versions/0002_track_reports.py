"""track_reports: the track record of every scope (all tickers, each ticker), stored by the writers so `/track`
reads one row (see jobs.ledger.models.TrackReport). Empty when made: the next write, `forecaster ledger migrate`
or the weekly summary fills it.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "track_reports",
        sa.Column("scope", sa.String(16), primary_key=True),
        sa.Column("generation", sa.Integer(), nullable=False, server_default=sa.text("0")),
        sa.Column("computed_generation", sa.Integer(), nullable=True),
        sa.Column("version", sa.Integer(), nullable=True),
        sa.Column("latest_week", sa.String(32), nullable=True),
        sa.Column("recorded", sa.Integer(), nullable=True),
        sa.Column("report", sa.Text(), nullable=True),
        sa.Column("computed_at", sa.String(40), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("track_reports")

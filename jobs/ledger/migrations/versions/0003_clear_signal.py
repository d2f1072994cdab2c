"""forecasts.clear_signal: whether the forecast's P(up) lay outside 0.5 ± SIGNAL_BAND, so it was shown with an
arrow (False: "no clear signal"). Nullable: entries recorded before, and those without probabilities, have none,
and read as shown with their arrow.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("forecasts", sa.Column("clear_signal", sa.Boolean(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("forecasts") as batch:  # SQLite drops a column by copying the table
        batch.drop_column("clear_signal")

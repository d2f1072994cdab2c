"""The forecasts table: the ledger that lived in Redis hashes until now; and track_weeks, the track record's counted
forecast per ticker and week, reduced to the numbers it sums (see jobs.ledger.models).

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "forecasts",
        sa.Column("id", sa.String(200), primary_key=True),
        sa.Column("job_id", sa.String(200), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("user", sa.String(64), nullable=True),
        sa.Column("channel", sa.String(64), nullable=False),
        sa.Column("ticker", sa.String(16), nullable=False),
        sa.Column("as_of", sa.String(16), nullable=False),
        sa.Column("requested_at", sa.String(40), nullable=False),
        sa.Column("cutoff", sa.String(40), nullable=False),
        sa.Column("data_as_of", sa.String(40), nullable=False),
        sa.Column("target_week", sa.String(32), nullable=False),
        sa.Column("week_start", sa.String(10), nullable=False),
        sa.Column("week_end", sa.String(10), nullable=False),
        sa.Column("direction", sa.String(8), nullable=False),
        sa.Column("magnitude", sa.String(16), nullable=True),
        sa.Column("label", sa.String(32), nullable=True),
        sa.Column("as_written", sa.Text(), nullable=False),
        sa.Column("parsed", sa.Boolean(), nullable=False),
        sa.Column("problems", sa.Text(), nullable=False),
        sa.Column("model", sa.Text(), nullable=False),
        sa.Column("prompt_hash", sa.String(64), nullable=False),
        sa.Column("prompt_hash_of", sa.String(8), nullable=False),
        sa.Column("latency_s", sa.Double(), nullable=False),
        sa.Column("generation_s", sa.Double(), nullable=True),
        sa.Column("prompt_tokens", sa.Integer(), nullable=True),
        sa.Column("new_tokens", sa.Integer(), nullable=True),
        sa.Column("p_up", sa.Double(), nullable=True),
        sa.Column("p_stated", sa.Double(), nullable=True),
        sa.Column("expected_move", sa.Double(), nullable=True),
        sa.Column("bin_probabilities", sa.Text(), nullable=True),
        sa.Column("scored_at", sa.String(40), nullable=True),
        sa.Column("realized_return", sa.Double(), nullable=True),
        sa.Column("actual_label", sa.String(32), nullable=True),
        sa.Column("hit", sa.Boolean(), nullable=True),
        sa.Column("start_close_date", sa.String(10), nullable=True),
        sa.Column("start_close", sa.Double(), nullable=True),
        sa.Column("end_close_date", sa.String(10), nullable=True),
        sa.Column("end_close", sa.Double(), nullable=True),
        sa.Column("previous_return", sa.Double(), nullable=True),
        sa.Column("momentum_label", sa.String(32), nullable=True),
        sa.Column("late", sa.Boolean(), nullable=False),
        sa.Column("superseded", sa.Boolean(), nullable=False, server_default=sa.false()),
        # the long texts last: SQLite reads a row's columns in order, and these spill onto overflow pages
        sa.Column("raw", sa.Text(), nullable=False),
        sa.Column("details", sa.Text(), nullable=False),
        sa.Column("requested_epoch", sa.Double(), nullable=False),
        sa.Column("week_opens_epoch", sa.Double(), nullable=False),
        sa.Column("week_closes_epoch", sa.Double(), nullable=False),
    )
    op.create_index("ix_forecasts_requested", "forecasts", ["requested_epoch"])
    op.create_index("ix_forecasts_ticker_requested", "forecasts", ["ticker", "requested_epoch"])
    op.create_index("ix_forecasts_target_week", "forecasts", ["week_start", "ticker"])
    op.create_index("ix_forecasts_user", "forecasts", ["user", "requested_epoch"])
    op.create_index("ix_forecasts_pending", "forecasts", ["week_closes_epoch"],
                    postgresql_where=sa.text("scored_at IS NULL"), sqlite_where=sa.text("scored_at IS NULL"))
    op.create_index("ix_forecasts_excluded", "forecasts", ["ticker"],
                    postgresql_where=sa.text("late OR superseded"), sqlite_where=sa.text("late = 1 OR superseded = 1"))
    op.create_table(
        "track_weeks",
        sa.Column("ticker", sa.String(16), primary_key=True),
        sa.Column("week_start", sa.String(10), primary_key=True),
        sa.Column("week_end", sa.String(10), nullable=False),
        sa.Column("target_week", sa.String(32), nullable=False),
        sa.Column("entry_id", sa.String(200), sa.ForeignKey("forecasts.id", ondelete="CASCADE"), nullable=False),
        sa.Column("requested_epoch", sa.Double(), nullable=False),
        sa.Column("scored", sa.Integer(), nullable=False),
        sa.Column("actual_up", sa.Integer(), nullable=True),
        sa.Column("model_parsed", sa.Integer(), nullable=False),
        sa.Column("model_up", sa.Integer(), nullable=False),
        sa.Column("model_down", sa.Integer(), nullable=False),
        sa.Column("model_correct", sa.Integer(), nullable=True),
        sa.Column("model_sq_error", sa.Double(), nullable=True),
        sa.Column("momentum_parsed", sa.Integer(), nullable=True),
        sa.Column("momentum_up", sa.Integer(), nullable=True),
        sa.Column("momentum_down", sa.Integer(), nullable=True),
        sa.Column("momentum_correct", sa.Integer(), nullable=True),
        sa.Column("momentum_sq_error", sa.Double(), nullable=True),
        sa.Column("down_sq_error", sa.Double(), nullable=True),
        sa.Column("up_sq_error", sa.Double(), nullable=True),
        sa.Column("p_up", sa.Double(), nullable=True),
        sa.Column("p_bin", sa.Integer(), nullable=True),
        sa.Column("p_sq_error", sa.Double(), nullable=True),
        sa.Column("p_log_loss", sa.Double(), nullable=True),
    )
    op.create_index("ix_track_weeks_week", "track_weeks", ["week_start"])
    op.create_index("ix_track_weeks_entry", "track_weeks", ["entry_id"], unique=True)


def downgrade() -> None:
    op.drop_table("track_weeks")
    op.drop_table("forecasts")

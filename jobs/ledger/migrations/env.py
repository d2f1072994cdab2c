"""Alembic's environment for the ledger: always run from code (`jobs.ledger.database.upgrade`), on the connection
it passes in; there is no alembic.ini and no offline mode."""

from __future__ import annotations

from alembic import context
from sqlalchemy import text

from jobs.ledger.models import Base

# Any constant: serializes concurrent start-ups (bot, worker, scheduler) migrating one Postgres database.
_PG_MIGRATION_LOCK = 7_310_424_001

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("the ledger's migrations run through jobs.ledger.database.upgrade, which passes a connection")
if connection.dialect.name == "postgresql":
    connection.execute(text(f"SELECT pg_advisory_xact_lock({_PG_MIGRATION_LOCK})"))
context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()

"""The ledger as a file: every entry, oldest first, as CSV or Parquet (`forecaster ledger export`). Apart from the
readers in `store` because it needs pandas, which the bot (a reader too) must not load.

After the entry's own fields come `votes_up` and `votes_down`: the 👍 and 👎 people gave it in Slack
(`jobs.ledger.votes`), the feedback a later training run can weigh.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from sqlalchemy import select

from jobs.ledger.columns import EXPORT_FORMATS, FIELDS
from jobs.ledger.database import Ledger
from jobs.ledger.models import Forecast
from jobs.ledger.store import columns_of, rows_of
from jobs.ledger.votes import counts

VOTE_COLUMNS = ("votes_up", "votes_down")


def export(ledger: Ledger, path: Path) -> int:
    """Write every entry (oldest first) to `path`, CSV or Parquet by its extension; returns the row count.
    Raises ValueError for any other extension, or for Parquet without pyarrow."""
    suffix = path.suffix.lower()
    if suffix not in EXPORT_FORMATS:
        raise ValueError(f"cannot export to {path.name!r}: the file name must end in .csv or .parquet")
    if suffix == ".parquet" and importlib.util.find_spec("pyarrow") is None:
        raise ValueError("Parquet export needs pyarrow: `pip install pyarrow`, or export to a .csv file")
    import pandas as pd

    query = select(*columns_of(True)).order_by(Forecast.requested_epoch, Forecast.id)
    frame = pd.DataFrame(rows_of(ledger, query), columns=list(FIELDS))
    dtypes = {"float": "Float64", "int": "Int64", "bool": "boolean", "str": "string"}
    frame = frame.astype({name: dtypes[kind.rstrip("?")] for name, kind in FIELDS.items()})
    voted = counts(ledger)
    for index, column in enumerate(VOTE_COLUMNS):
        frame[column] = pd.array([voted.get(entry, (0, 0))[index] for entry in frame["id"]], dtype="Int64")
    if suffix == ".csv":
        frame.to_csv(path, index=False)
    else:
        frame.to_parquet(path, index=False)
    return len(frame)

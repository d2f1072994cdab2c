"""Market calendar facts: weekly windows, returns and bins, Dow30 membership."""

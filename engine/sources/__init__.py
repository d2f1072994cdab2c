"""Market data sources: Finnhub, Yahoo Finance, snapshots on disk, and the Redis cache and limiter."""

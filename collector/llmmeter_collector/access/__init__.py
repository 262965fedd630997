"""Who may send and ask: API and ingest keys, rate limits, the first admin key."""

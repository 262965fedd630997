"""The llmmeter collector: receives OTLP, prices GenAI calls, keeps the ledger in Postgres."""

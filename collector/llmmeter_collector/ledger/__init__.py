"""The ledger in Postgres: migrations, the write path, spool, dead letters, retention, archive, backup."""

"""Budgets: definitions, their evaluation from the ledger, the period-end forecast, alert routing."""

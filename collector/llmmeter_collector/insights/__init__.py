"""What the ledger says beyond totals: savings recommendations, anomalies, the cost report."""

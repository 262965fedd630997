"""What leaves the collector besides the ledger: Prometheus metrics and the OTLP forward."""

"""Ingest: OTLP receivers (HTTP, gRPC), decoding, edge limits, and normalization of every GenAI dialect."""

"""Pricing: the rates of a model at an instant, the cost of a call, and the overrides file."""

"""Notifications the collector sends itself: event webhooks (``webhooks``)."""

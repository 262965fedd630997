"""Anthropic Messages API wire format."""

from __future__ import annotations

from typing import Any

ROUTES: list[tuple[str, list[str], Any]] = []

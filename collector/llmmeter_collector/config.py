"""Collector settings, read from ``LLMMETER_*`` environment variables and validated at start."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path


class ConfigError(ValueError):
    """A setting has a bad value; the message names the variable."""


def default_data_dir() -> Path:
    import platformdirs

    return Path(platformdirs.user_data_dir("llmmeter"))


@dataclass(frozen=True)
class Settings:
    database_url: str = ""  # empty: start the embedded Postgres
    database_schema: str = ""  # empty: the connection's default search_path
    data_dir: str = ""  # embedded Postgres data and spool; empty: the user data directory
    host: str = "127.0.0.1"
    http_port: int = 4318
    prices_file: str = ""
    max_body_bytes: int = 16 * 1024 * 1024
    max_queued_calls: int = 100_000
    max_label_values: int = 200
    log_level: str = "INFO"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: object) -> Settings:
        env = os.environ if env is None else env
        values: dict[str, object] = {}
        for f in fields(cls):
            name = "LLMMETER_" + f.name.upper()
            raw = env.get(name)
            if raw is None or raw == "":
                continue
            if f.type == "int":
                try:
                    number = int(raw)
                except ValueError:
                    raise ConfigError(f"{name} must be a whole number, got {raw!r}") from None
                if number < 0 or (f.name == "http_port" and number > 65535):
                    raise ConfigError(f"{name} is out of range: {number}")
                values[f.name] = number
            else:
                values[f.name] = raw
        values.update({k: v for k, v in overrides.items() if v is not None})
        settings = cls(**values)  # type: ignore[arg-type]
        if settings.prices_file and not Path(settings.prices_file).is_file():
            raise ConfigError(f"LLMMETER_PRICES_FILE: no such file {settings.prices_file!r}")
        return settings

    @property
    def data_path(self) -> Path:
        return Path(self.data_dir) if self.data_dir else default_data_dir()

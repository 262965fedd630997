"""Collector settings, read from ``LLMMETER_*`` environment variables and validated at start."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path


class ConfigError(ValueError):
    """A setting has a bad value; the message names the variable."""


_BOOLS = {"1": True, "true": True, "yes": True, "on": True, "0": False, "false": False, "no": False, "off": False}


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
    grpc_port: int = 4317  # 0: no gRPC receiver
    prices_file: str = ""
    budgets_file: str = ""  # YAML budgets (read-only; win over API budgets of the same name)
    budgets_refresh_seconds: int = 15  # how often budget spend, gauges and /budgets/status are recomputed
    max_body_bytes: int = 16 * 1024 * 1024
    max_queued_calls: int = 100_000
    max_batch_calls: int = 20_000  # calls committed in one transaction at most
    writers: int = 2  # writer threads, one Postgres connection each (ledger/writer.py)
    max_label_values: int = 200
    require_keys: bool = False  # refuse unauthenticated exports even before any key exists
    bootstrap_admin_key: str = ""  # the first admin key, stored when no key was ever created (access/bootstrap.py)
    key_cache_seconds: int = 10
    oidc_issuer: str = ""  # OIDC bearer tokens beside API keys (access/oidc.py): the issuer ...
    oidc_audience: str = ""  # ... and the audience tokens must name; both or neither
    oidc_discovery_url: str = ""  # empty: <issuer>/.well-known/openid-configuration
    oidc_role_claim: str = "llmmeter_role"
    oidc_projects_claim: str = "llmmeter_projects"
    oidc_role_map: str = ""  # "idp-group=admin,other-group=viewer"; empty: the claim holds role names
    forward_endpoint: str = ""  # OTLP/HTTP base URL (or .../v1/traces) to forward priced spans to
    forward_headers: str = ""  # "k1=v1,k2=v2" sent with every forwarded export
    spool: bool = True  # hold exports on disk while Postgres is unreachable
    spool_dir: str = ""  # empty: <data dir>/spool
    spool_max_bytes: int = 256 * 1024 * 1024
    partition_days_ahead: int = 7
    reuse_port: bool = False  # SO_REUSEPORT: several collector processes serve one HTTP port (Linux)
    retention_days: int = 90  # raw calls older than this are dropped by daily partition; 0: keep forever
    retention_interval_seconds: int = 86400  # how often the collector runs retention; 0: only `llmmeter db retention`
    audit_retention_days: int = 365  # audit log entries older than this are deleted by retention; 0: keep forever
    archive_url: str = ""  # export a partition before dropping it: a directory or s3://bucket/prefix; empty: off
    archive_format: str = "jsonl"  # "jsonl" (gzip JSON lines) or "parquet" (needs the `archive` extra)
    archive_s3_endpoint: str = ""  # S3-compatible endpoint URL (MinIO, R2, ...); empty: AWS
    webhook_interval_seconds: int = 30  # how often events are looked for and webhook deliveries made (notify/)
    webhook_retry_seconds: int = 30  # a failed delivery is tried again after this x 2^attempts (at most an hour)
    reconcile_interval_seconds: int = 0  # reconcile with the providers' reports this often (admin keys set); 0: off
    reconcile_days: int = 7  # the complete UTC days each scheduled reconcile covers
    metrics_token: str = ""  # when set, /metrics needs "Authorization: Bearer <token>" (401 otherwise)
    metrics_project_labels: bool = True  # false: spend/token/call metrics carry no project label
    log_level: str = "INFO"
    log_format: str = "text"  # "text" or "json"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: object) -> Settings:
        env = os.environ if env is None else env
        values: dict[str, object] = {}
        for f in fields(cls):
            name = "LLMMETER_" + f.name.upper()
            raw = env.get(name)
            if raw is None or raw == "":
                continue
            if f.type == "bool":
                lowered = raw.strip().lower()
                if lowered not in _BOOLS:
                    raise ConfigError(f"{name} must be true or false, got {raw!r}")
                values[f.name] = _BOOLS[lowered]
            elif f.type == "int":
                try:
                    number = int(raw)
                except ValueError:
                    raise ConfigError(f"{name} must be a whole number, got {raw!r}") from None
                if number < 0 or (f.name.endswith("_port") and number > 65535):
                    raise ConfigError(f"{name} is out of range: {number}")
                values[f.name] = number
            else:
                values[f.name] = raw
        values.update({k: v for k, v in overrides.items() if v is not None})
        settings = cls(**values)  # type: ignore[arg-type]
        if settings.prices_file and not Path(settings.prices_file).is_file():
            raise ConfigError(f"LLMMETER_PRICES_FILE: no such file {settings.prices_file!r}")
        if settings.log_format not in ("text", "json"):
            raise ConfigError(f"LLMMETER_LOG_FORMAT must be text or json, got {settings.log_format!r}")
        if settings.forward_endpoint and not settings.forward_endpoint.startswith(("http://", "https://")):
            raise ConfigError(f"LLMMETER_FORWARD_ENDPOINT must be an http(s) URL, got {settings.forward_endpoint!r}")
        if settings.max_label_values < 1:
            raise ConfigError("LLMMETER_MAX_LABEL_VALUES must be at least 1")
        if not 1 <= settings.reconcile_days <= 366:
            raise ConfigError(f"LLMMETER_RECONCILE_DAYS must be between 1 and 366, got {settings.reconcile_days}")
        if bool(settings.oidc_issuer) != bool(settings.oidc_audience):
            raise ConfigError("LLMMETER_OIDC_ISSUER and LLMMETER_OIDC_AUDIENCE must be set together")
        if settings.oidc_issuer and not settings.oidc_issuer.startswith(("https://", "http://")):
            raise ConfigError(f"LLMMETER_OIDC_ISSUER must be an http(s) URL, got {settings.oidc_issuer!r}")
        if settings.writers < 1:
            raise ConfigError("LLMMETER_WRITERS must be at least 1")
        return settings

    @property
    def spool_path(self) -> Path:
        return Path(self.spool_dir) if self.spool_dir else self.data_path / "spool"

    @property
    def data_path(self) -> Path:
        return Path(self.data_dir) if self.data_dir else default_data_dir()

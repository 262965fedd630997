"""The CLI's config file (collector URL and API key) and ``llmmeter config`` to show it.

The file is ``$LLMMETER_CONFIG`` or ``<user config dir>/llmmeter/config.toml`` (``~/.config/llmmeter/config.toml``
on Linux), written by ``llmmeter init`` with mode 0600 because it holds a key. Precedence for both values:
command-line flag (``--url``, ``--api-key``) > environment (``LLMMETER_URL``, ``LLMMETER_API_KEY``) > file >
default (``http://localhost:4318``, no key).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import click

DEFAULT_URL = "http://localhost:4318"

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

CONFIG_ENV = "LLMMETER_CONFIG"
KEYS = ("url", "api_key")


class ConfigFileError(click.ClickException):
    """The config file exists but cannot be read (exit code 2: fix the file or the path)."""

    exit_code = 2


def config_path() -> Path:
    override = os.environ.get(CONFIG_ENV)
    if override:
        return Path(override).expanduser()
    import platformdirs

    return Path(platformdirs.user_config_dir("llmmeter")) / "config.toml"


def load() -> dict[str, str]:
    """The config file's values ({} when there is no file)."""
    path = config_path()
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise ConfigFileError(f"cannot read {path}: {exc.strerror}") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigFileError(f"{path} is not valid TOML: {exc}") from None
    section = data.get("collector", {})
    if not isinstance(section, dict):
        raise ConfigFileError(f"{path}: [collector] must be a table")
    out = {}
    for key in KEYS:
        value = section.get(key)
        if value is not None:
            if not isinstance(value, str):
                raise ConfigFileError(f"{path}: collector.{key} must be a string")
            out[key] = value
    return out


def _toml_string(value: str) -> str:
    return json.dumps(value)  # a JSON string is a valid TOML basic string


def save(values: dict[str, str]) -> Path:
    """Write the config file with mode 0600 (created that way: the key is never readable by others)."""
    path = config_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ["# llmmeter CLI configuration (written by `llmmeter init`)", "[collector]"]
    lines += [f"{key} = {_toml_string(values[key])}" for key in KEYS if values.get(key)]
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write("\n".join(lines) + "\n")
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
    return path


def mask(key: str | None) -> str | None:
    """A key as shown on screen: its prefix only."""
    if not key:
        return None
    return key[:9] + "…" if len(key) > 12 else "…"


def resolved(url_flag: str | None = None, key_flag: str | None = None) -> dict[str, Any]:
    """The URL and key the CLI uses, and where each came from."""
    file_values = load()
    out: dict[str, Any] = {}
    for key, flag, env, default in (
        ("url", url_flag, "LLMMETER_URL", DEFAULT_URL),
        ("api_key", key_flag, "LLMMETER_API_KEY", None),
    ):
        if flag:
            out[key], out[key + "_source"] = flag, "flag"
        elif os.environ.get(env):
            out[key], out[key + "_source"] = os.environ[env], f"env {env}"
        elif file_values.get(key):
            out[key], out[key + "_source"] = file_values[key], "config file"
        else:
            out[key], out[key + "_source"] = default, "default"
    return out


@click.command("config")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
@click.option("--show-key", is_flag=True, help="Print the API key in full.")
def config(as_json: bool, show_key: bool) -> None:
    """Show the CLI configuration: file, collector URL and API key, and where each value comes from."""
    path = config_path()
    values = resolved()
    shown = values["api_key"] if show_key else mask(values["api_key"])
    mode = None
    if path.exists():
        mode = oct(path.stat().st_mode & 0o777)
    data = {
        "config_file": str(path),
        "config_file_exists": path.exists(),
        "config_file_mode": mode,
        "url": values["url"],
        "url_source": values["url_source"],
        "api_key": shown,
        "api_key_source": values["api_key_source"],
    }
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    click.echo(f"config file  {path}" + ("" if path.exists() else "  (not written yet: run `llmmeter init`)"))
    if mode:
        click.echo(f"permissions  {mode}")
    click.echo(f"url          {data['url']}  ({data['url_source']})")
    click.echo(f"api key      {shown or '(none)'}  ({data['api_key_source']})")

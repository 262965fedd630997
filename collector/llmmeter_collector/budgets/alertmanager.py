"""Render Alertmanager's configuration from the environment: ``prometheus/alertmanager.yml`` holds the routes
and inhibitions with receivers that have no integrations; this adds them from ``ALERTMANAGER_*`` variables and
writes the secrets to files (mode 0600) that the rendered configuration reads, so nothing is a committed
placeholder. Alertmanager itself expands no environment variables, hence this one-shot step (docker-compose.yml:
``alertmanager-config``).

    python -m llmmeter_collector.budgets.alertmanager TEMPLATE OUT_DIR

* ``ALERTMANAGER_WEBHOOK_URL`` (and ``ALERTMANAGER_WEBHOOK_TOKEN``, a bearer token): a webhook on every receiver;
* ``ALERTMANAGER_SLACK_WEBHOOK_URL`` (and ``ALERTMANAGER_SLACK_CHANNEL``): Slack on team, oncall, budget-*;
* ``ALERTMANAGER_EMAIL_TO`` with ``ALERTMANAGER_SMTP_SMARTHOST`` (host:port), ``ALERTMANAGER_SMTP_FROM`` (and
  ``ALERTMANAGER_SMTP_USERNAME``, ``ALERTMANAGER_SMTP_PASSWORD``): email on oncall and budget-critical.

With none set, alerts are evaluated and visible in Alertmanager's UI but sent nowhere (the job says so).
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

SLACK_RECEIVERS = ("team", "oncall", "budget-owners", "budget-critical")
EMAIL_RECEIVERS = ("oncall", "budget-critical")
SLACK_TITLE = "{{ .CommonLabels.alertname }}{{ if .CommonLabels.budget }}: budget {{ .CommonLabels.budget }}{{ end }}"
SLACK_TEXT = (
    '{{ range .Alerts }}{{ .Annotations.summary }}{{ "\\n" }}{{ .Annotations.description }}{{ "\\n" }}{{ end }}'
)


class ReceiverConfigError(ValueError):
    """An ALERTMANAGER_* variable is malformed or a required companion is missing."""


def _url(env: Mapping[str, str], name: str) -> str:
    value = env.get(name, "").strip()
    if value and not re.match(r"^https?://[^\s/]+", value):
        raise ReceiverConfigError(f"{name} must be an http(s) URL, got {value!r}")
    return value


def render(template: str, env: Mapping[str, str], secrets_dir: str) -> tuple[str, dict[str, str]]:
    """The configuration text and the secret files to write ({path: content}) for ``env``."""
    config: dict[str, Any] = yaml.safe_load(template)
    receivers = {r["name"]: r for r in config["receivers"]}
    glob = config.setdefault("global", {})
    files: dict[str, str] = {}

    webhook = _url(env, "ALERTMANAGER_WEBHOOK_URL")
    if webhook:
        hook: dict[str, Any] = {"url": webhook, "send_resolved": True}
        token = env.get("ALERTMANAGER_WEBHOOK_TOKEN", "")
        if token:
            files[f"{secrets_dir}/webhook_token"] = token
            auth = {"type": "Bearer", "credentials_file": f"{secrets_dir}/webhook_token"}
            hook["http_config"] = {"authorization": auth}
        for receiver in receivers.values():
            receiver["webhook_configs"] = [hook]

    slack = _url(env, "ALERTMANAGER_SLACK_WEBHOOK_URL")
    if slack:
        files[f"{secrets_dir}/slack_webhook_url"] = slack
        glob["slack_api_url_file"] = f"{secrets_dir}/slack_webhook_url"
        channel = env.get("ALERTMANAGER_SLACK_CHANNEL", "") or "#llm-costs"
        for name in SLACK_RECEIVERS:
            receivers[name]["slack_configs"] = [
                {"channel": channel, "send_resolved": True, "title": SLACK_TITLE, "text": SLACK_TEXT}
            ]

    email_to = env.get("ALERTMANAGER_EMAIL_TO", "").strip()
    if email_to:
        smarthost = env.get("ALERTMANAGER_SMTP_SMARTHOST", "").strip()
        sender = env.get("ALERTMANAGER_SMTP_FROM", "").strip()
        if not re.fullmatch(r"[^\s:]+:\d+", smarthost):
            raise ReceiverConfigError(f"ALERTMANAGER_SMTP_SMARTHOST must be host:port, got {smarthost!r}")
        if "@" not in sender:
            raise ReceiverConfigError(f"ALERTMANAGER_SMTP_FROM must be an email address, got {sender!r}")
        glob.update({"smtp_smarthost": smarthost, "smtp_from": sender, "smtp_require_tls": True})
        if env.get("ALERTMANAGER_SMTP_USERNAME"):
            glob["smtp_auth_username"] = env["ALERTMANAGER_SMTP_USERNAME"]
        if env.get("ALERTMANAGER_SMTP_PASSWORD"):
            files[f"{secrets_dir}/smtp_password"] = env["ALERTMANAGER_SMTP_PASSWORD"]
            glob["smtp_auth_password_file"] = f"{secrets_dir}/smtp_password"
        for name in EMAIL_RECEIVERS:
            receivers[name]["email_configs"] = [{"to": email_to, "send_resolved": True}]
    head = "# Rendered by llmmeter_collector.budgets.alertmanager from prometheus/alertmanager.yml: do not edit.\n"
    return head + yaml.safe_dump(config, sort_keys=False, width=200), files


def integrations(config_text: str) -> list[str]:
    """``receiver: kind`` for every integration in a rendered configuration (for the job's log line)."""
    config = yaml.safe_load(config_text)
    return [f"{r['name']}: {k[:-8]}" for r in config["receivers"] for k in r if k.endswith("_configs")]


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        sys.stderr.write("usage: python -m llmmeter_collector.budgets.alertmanager TEMPLATE OUT_DIR\n")
        return 2
    template, out_dir = Path(args[0]), Path(args[1])
    secrets_dir = str(out_dir / "secrets")
    try:
        text, files = render(template.read_text(), os.environ, secrets_dir)
    except ReceiverConfigError as exc:
        sys.stderr.write(f"alertmanager config: {exc}\n")
        return 2
    os.umask(0o077)
    Path(secrets_dir).mkdir(parents=True, exist_ok=True)
    for path, content in files.items():
        Path(path).write_text(content)
    (out_dir / "alertmanager.yml").write_text(text)
    found = integrations(text)
    print("alertmanager config: " + (", ".join(found) if found else "no receivers configured: alerts go nowhere"))
    return 0


if __name__ == "__main__":
    sys.exit(main())

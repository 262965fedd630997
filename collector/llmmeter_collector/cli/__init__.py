"""The ``llmmeter`` command: run a collector, and read spend from one over its REST API.

Each command lives in its own module of this package and is registered here.
Exit codes (``cli/common.py``, documented in docs/cli.md): 0 success; 1 the collector answered with an error
or could not be reached; 2 wrong usage; 3 a needed extra is not installed; 4 a port is busy (``serve``);
5 the database cannot be reached or its URL is wrong; 6 an output file cannot be written; 7 Python too old.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import click

from llmmeter_collector.cli.anomalies import anomalies
from llmmeter_collector.cli.audit import audit
from llmmeter_collector.cli.budget import budget
from llmmeter_collector.cli.calls import calls_command
from llmmeter_collector.cli.config import config
from llmmeter_collector.cli.db import db
from llmmeter_collector.cli.doctor import doctor
from llmmeter_collector.cli.export import export
from llmmeter_collector.cli.focus import import_group
from llmmeter_collector.cli.forecast import forecast
from llmmeter_collector.cli.init import init
from llmmeter_collector.cli.keys import keys
from llmmeter_collector.cli.optimize import optimize
from llmmeter_collector.cli.prices import prices
from llmmeter_collector.cli.prompts import experiments, prompts
from llmmeter_collector.cli.reconcile import reconcile
from llmmeter_collector.cli.report import report
from llmmeter_collector.cli.serve import serve
from llmmeter_collector.cli.status import status
from llmmeter_collector.cli.stripe_export import stripe_export
from llmmeter_collector.cli.webhooks import webhooks


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("llmmeter")
    except PackageNotFoundError:
        return "unknown (not installed)"


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(_version(), "-V", "--version", prog_name="llmmeter", message="%(prog)s %(version)s")
def cli() -> None:
    """llmmeter: what your LLM calls cost, by model, feature, project and user."""


cli.add_command(serve)
cli.add_command(status)
cli.add_command(prices)  # cli/prices.py
cli.add_command(init)  # cli/init.py
cli.add_command(config)  # cli/config.py
cli.add_command(optimize)  # cli/optimize.py
cli.add_command(calls_command)  # cli/calls.py
cli.add_command(export)  # cli/export.py
export.add_command(stripe_export)  # cli/stripe_export.py: llmmeter export stripe
cli.add_command(forecast)  # cli/forecast.py
cli.add_command(anomalies)  # cli/anomalies.py
cli.add_command(keys)  # cli/keys.py
cli.add_command(db)  # cli/db.py: retention, partitions, backup, restore
cli.add_command(budget)  # cli/budget.py
cli.add_command(report)  # cli/report.py
cli.add_command(doctor)  # cli/doctor.py
cli.add_command(audit)  # cli/audit.py
cli.add_command(webhooks)  # cli/webhooks.py
cli.add_command(reconcile)  # cli/reconcile.py
cli.add_command(prompts)  # cli/prompts.py
cli.add_command(experiments)  # cli/prompts.py
cli.add_command(import_group)  # cli/focus.py: llmmeter import focus FILE


def main(argv: Sequence[str] | None = None) -> None:
    cli.main(args=list(argv) if argv is not None else sys.argv[1:], prog_name="llmmeter")

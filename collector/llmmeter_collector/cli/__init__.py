"""The ``llmmeter`` command: run a collector, and read spend from one over its REST API.

Each command lives in its own module of this package and is registered here.
Exit codes: 0 success; 1 the collector answered with an error or could not be reached;
2 wrong usage (bad option or argument); 3 a needed extra is not installed.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import click

from llmmeter_collector.cli.serve import serve
from llmmeter_collector.cli.status import status


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """llmmeter: what your LLM calls cost, by model, feature, project and user."""


cli.add_command(serve)
cli.add_command(status)


def main(argv: Sequence[str] | None = None) -> None:
    cli.main(args=list(argv) if argv is not None else sys.argv[1:], prog_name="llmmeter")

"""Entry point of the ``llmmeter`` command: a clear message when the CLI's extra is not installed."""

from __future__ import annotations

import sys


def main() -> None:
    try:
        from llmmeter_collector.cli import main as cli_main
    except ImportError as exc:
        sys.stderr.write(
            f"llmmeter: the command-line tool needs extra packages ({exc.name or exc} is missing).\n"
            "Install them with:  pip install 'llmmeter[cli]'   (or 'llmmeter[collector]' to run a collector)\n"
        )
        raise SystemExit(3) from None
    cli_main()

"""``python -m llmmeter_collector.cli ARGS``: the ``llmmeter`` command, for when its script is not on PATH."""

from llmmeter_collector.cli import main

main()

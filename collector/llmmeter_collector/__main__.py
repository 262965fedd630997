"""``python -m llmmeter_collector [OPTIONS]``: run the collector (same as ``llmmeter serve``)."""

import sys

from llmmeter_collector.cli import main

if __name__ == "__main__":
    main(["serve", *sys.argv[1:]])

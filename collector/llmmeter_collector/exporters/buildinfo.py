"""What a scrape tells about the collector process itself: ``llmmeter_build_info{version,python}`` (always 1)
and prometheus_client's ``process_*`` metrics (CPU, memory, open files, start time), on the collector's registry."""

from __future__ import annotations

import platform
from importlib.metadata import PackageNotFoundError, version

from prometheus_client import CollectorRegistry, Gauge, ProcessCollector

from llmmeter_collector import semconv as sc


def package_version() -> str:
    """The installed llmmeter version, or ``unknown`` when run from a source tree that is not installed."""
    try:
        return version("llmmeter")
    except PackageNotFoundError:
        return "unknown"


def register(registry: CollectorRegistry) -> None:
    """Add the build-info gauge and the process collector to ``registry`` (once per registry)."""
    info = Gauge(
        sc.PROM_BUILD_INFO, "The running collector's version (value 1).", ("version", "python"), registry=registry
    )
    info.labels(package_version(), platform.python_version()).set(1)
    ProcessCollector(registry=registry)

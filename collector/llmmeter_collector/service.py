"""The collector process: wires storage, pricing, ingest, metrics and HTTP routes, and runs them."""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType

import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from psycopg_pool import ConnectionPool
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from llmmeter_collector import api, storage
from llmmeter_collector.apiauth import ApiAuth
from llmmeter_collector.config import Settings
from llmmeter_collector.embedded import EmbeddedPostgres
from llmmeter_collector.ingest import Ingestor
from llmmeter_collector.keys import KeyStore
from llmmeter_collector.llmcall import LlmCall
from llmmeter_collector.metrics import Metrics
from llmmeter_collector.pricing import PriceCatalog
from llmmeter_collector.ratelimit import RateLimits
from llmmeter_collector.receiver import Receiver

logger = logging.getLogger("llmmeter.collector")


class Collector:
    """Everything one collector process runs. ``start()`` before serving, ``close()`` after."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.embedded: EmbeddedPostgres | None = None
        self.dsn = settings.database_url
        self.schema = settings.database_schema or None
        self.metrics = Metrics(settings.max_label_values)
        self.catalog = PriceCatalog(settings.prices_file or None)
        self.rate_limits = RateLimits.from_env()  # per-project API and ingest limits (ratelimit.py)
        self._ingestor: Ingestor | None = None
        self._pool: ConnectionPool | None = None
        self._keys: KeyStore | None = None
        self.ready = False

    def start(self) -> None:
        if not self.dsn:
            self.embedded = EmbeddedPostgres(self.settings.data_path)
            self.dsn = self.embedded.start()
        storage.migrate(self.dsn, self.schema)
        self._pool = storage.create_pool(self.dsn, self.schema)
        self._keys = KeyStore(
            self._pool, cache_seconds=self.settings.key_cache_seconds, require_keys=self.settings.require_keys
        )
        self.metrics.seed(api.counter_seed(self._pool))
        self._ingestor = Ingestor(
            storage.Ledger(self.dsn, self.schema),
            max_queued_calls=self.settings.max_queued_calls,
            on_commit=self.metrics.observe,
        )
        self.ready = True

    def close(self) -> None:
        self.ready = False
        if self._ingestor is not None:
            self._ingestor.close()
        if self._pool is not None:
            self._pool.close()
        if self.embedded is not None:
            self.embedded.stop()
        logger.info("collector stopped: queue drained and committed")

    @property
    def pool(self) -> ConnectionPool:
        """Read connections for the REST API and other queries."""
        assert self._pool is not None, "start() first"
        return self._pool

    @property
    def keys(self) -> KeyStore:
        """API and ingest keys (see ``llmmeter_collector.keys``)."""
        assert self._keys is not None, "start() first"
        return self._keys

    def price(self, call: LlmCall) -> None:
        call.cost = self.catalog.price(call)

    def app(self) -> Starlette:
        assert self._ingestor is not None, "start() first"
        receiver = Receiver(self._ingestor, self.metrics, self.price, self.settings.max_body_bytes)

        async def prometheus(request: Request) -> Response:
            return Response(generate_latest(self.metrics.registry), media_type=CONTENT_TYPE_LATEST)

        async def healthz(request: Request) -> Response:
            return JSONResponse({"status": "ok"})

        async def readyz(request: Request) -> Response:
            ok = self.ready
            return JSONResponse({"ready": ok}, status_code=200 if ok else 503)

        return Starlette(
            routes=[
                Route("/v1/traces", receiver.traces, methods=["POST"]),
                Route("/v1/metrics", receiver.metrics_export, methods=["POST"]),
                Route("/metrics", prometheus),
                Route("/healthz", healthz),
                Route("/readyz", readyz),
                *api.routes(self),
            ],
            middleware=[Middleware(ApiAuth, collector=self)],  # API keys, roles, projects, rate limits
        )


class _Server(uvicorn.Server):
    """uvicorn re-raises SIGTERM after its shutdown, which would kill the process before the collector
    drains, commits and stops Postgres; here a signal only asks for a graceful exit."""

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self.should_exit and sig == signal.SIGINT:
            self.force_exit = True
        self.should_exit = True


def _uvicorn_config(collector: Collector, host: str, port: int) -> uvicorn.Config:
    return uvicorn.Config(
        collector.app(), host=host, port=port, log_level="warning", access_log=False, lifespan="off"
    )


def serve(settings: Settings) -> None:
    """Run in the foreground until SIGINT/SIGTERM; then drain the queue, commit, and stop."""
    collector = Collector(settings)
    collector.start()
    try:
        server = _Server(_uvicorn_config(collector, settings.host, settings.http_port))
        logger.info("llmmeter collector listening on http://%s:%d", settings.host, settings.http_port)
        server.run()
    finally:
        collector.close()


class BackgroundCollector:
    """A collector serving on a free loopback port in a thread: for tests and the demo."""

    def __init__(self, settings: Settings) -> None:
        self.collector = Collector(settings)
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.url = ""

    def __enter__(self) -> BackgroundCollector:
        self.collector.start()
        config = _uvicorn_config(self.collector, "127.0.0.1", self.collector.settings.http_port)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="llmmeter-http", daemon=True)
        self._thread.start()
        while not self._server.started:
            if not self._thread.is_alive():
                raise RuntimeError("collector HTTP server failed to start")
            threading.Event().wait(0.01)
        port = self._server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    def __exit__(self, *exc: object) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(10)
        self.collector.close()

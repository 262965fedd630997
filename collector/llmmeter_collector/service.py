"""The collector process: wires storage, pricing, ingest, metrics and HTTP routes, and runs them."""

from __future__ import annotations

import logging
import shutil
import signal
import socket
import tempfile
import threading
import weakref
from datetime import datetime, timezone
from decimal import Decimal
from types import FrameType

import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from psycopg_pool import ConnectionPool
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from llmmeter_collector import api, bootstrap, budgets, buildinfo, storage
from llmmeter_collector.apiauth import ApiAuth, metrics_token_ok
from llmmeter_collector.cli.doctor import routes as doctor_routes
from llmmeter_collector.cli.prices import routes as price_routes
from llmmeter_collector.config import Settings
from llmmeter_collector.embedded import EmbeddedPostgres
from llmmeter_collector.forward import Forwarder
from llmmeter_collector.grpc_receiver import GrpcReceiver
from llmmeter_collector.ingest import Ingestor
from llmmeter_collector.keys import KeyStore
from llmmeter_collector.llmcall import Cost, LlmCall
from llmmeter_collector.logging_setup import configure_logging
from llmmeter_collector.metrics import Metrics
from llmmeter_collector.pricing import PriceCatalog, PriceError
from llmmeter_collector.ratelimit import RateLimits
from llmmeter_collector.receiver import Pipeline, Receiver
from llmmeter_collector.retention import RetentionScheduler
from llmmeter_collector.spool import Spool

logger = logging.getLogger("llmmeter.collector")
_ZERO = Decimal(0)


class Collector:
    """Everything one collector process runs. ``start()`` before serving, ``close()`` after."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.embedded: EmbeddedPostgres | None = None
        self.dsn = settings.database_url
        self.schema = settings.database_schema or None
        self.metrics = Metrics(settings.max_label_values, project_labels=settings.metrics_project_labels)
        buildinfo.register(self.metrics.registry)  # llmmeter_build_info and process_* metrics
        self.catalog = PriceCatalog(settings.prices_file or None)
        self.rate_limits = RateLimits.from_env()  # API and ingest limits per key, or per address (ratelimit.py)
        self._ingestor: Ingestor | None = None
        self._pool: ConnectionPool | None = None
        self._keys: KeyStore | None = None
        self.pipeline: Pipeline | None = None
        self.forwarder: Forwarder | None = None
        self.grpc: GrpcReceiver | None = None
        self.retention: RetentionScheduler | None = None  # drops old partitions on a schedule (retention.py)
        self.ready = False

    def start(self) -> None:
        if not self.dsn:
            self.embedded = EmbeddedPostgres(self.settings.data_path)
            self.dsn = self.embedded.start()
        storage.migrate(self.dsn, self.schema)
        self.retention = RetentionScheduler(self.dsn, self.schema, self.settings)
        self.retention.start()
        self._pool = storage.create_pool(self.dsn, self.schema)
        self._keys = KeyStore(
            self._pool, cache_seconds=self.settings.key_cache_seconds, require_keys=self.settings.require_keys
        )
        bootstrap.first_admin_key(self._pool, self.settings.bootstrap_admin_key, self.settings.require_keys)
        self.metrics.seed(api.counter_seed(self._pool))
        self._keys.required()  # known before any outage, so exports can be spooled while Postgres is away
        ledgers = [storage.Ledger(self.dsn, self.schema) for _ in range(self.settings.writers)]
        ledgers[0].ensure_partitions_ahead(datetime.now(timezone.utc).date(), self.settings.partition_days_ahead)
        spool = Spool(self.settings.spool_path, self.settings.spool_max_bytes) if self.settings.spool else None
        self.metrics.postgres_up.set(1)
        self.metrics.spool_bytes.set(spool.size_bytes if spool else 0)
        self._ingestor = Ingestor(
            ledgers,
            max_queued_calls=self.settings.max_queued_calls,
            max_batch_calls=self.settings.max_batch_calls,
            on_commit=self.metrics.observe,
            spool=spool,
            on_state=self._storage_state,
            on_spooled=self.metrics.spooled_calls.inc,
            partition_days_ahead=self.settings.partition_days_ahead,
        )
        if self.settings.forward_endpoint:
            self.forwarder = Forwarder(self.settings.forward_endpoint, self.metrics, self.settings.forward_headers)
        self.pipeline = Pipeline(self._ingestor, self.metrics, self.price, self._keys, self.forwarder)
        ingestor = self._ingestor
        self.metrics.queue_depth.set_function(lambda: ingestor.queued_calls)
        self.pipeline.rate_limiter = self.rate_limits.ingest  # ingest limit per key or address (ratelimit.py)
        self.ready = True

    def _storage_state(self, ok: bool, spool_bytes: int) -> None:
        self.metrics.postgres_up.set(1 if ok else 0)
        self.metrics.spool_bytes.set(spool_bytes)

    def start_grpc(self, host: str, port: int) -> int:
        """Serve OTLP/gRPC on ``port`` (0: a free port); returns the bound port."""
        assert self.pipeline is not None, "start() first"
        self.grpc = GrpcReceiver(self.pipeline, self.settings.max_body_bytes)
        return self.grpc.start(host, port)

    def reload_prices(self) -> list[str]:
        """Re-read the price overrides file; on errors keep the prices in use. Returns the problems found."""
        try:
            self.catalog.reload()
        except PriceError as exc:
            self.metrics.price_reloads.labels("error").inc()
            logger.error("price file not reloaded, keeping the last good prices: %s", "; ".join(exc.problems))
            return exc.problems
        except OSError as exc:
            self.metrics.price_reloads.labels("error").inc()
            logger.error("price file not reloaded, keeping the last good prices: %s", exc)
            return [str(exc)]
        self.metrics.price_reloads.labels("ok").inc()
        logger.info("prices reloaded from %s", self.settings.prices_file or "the catalog")
        return []

    def readiness(self) -> dict[str, object]:
        """Ready when Postgres answers, or when it does not but exports can still be spooled."""
        postgres = True
        try:
            with self.pool.connection(timeout=2) as conn:
                conn.execute("SELECT 1")
        except Exception:
            postgres = False
        spool = self._ingestor.spool if self._ingestor is not None else None
        spool_room = spool is not None and spool.size_bytes < spool.max_bytes
        self.metrics.postgres_up.set(1 if postgres else 0)
        return {
            "ready": self.ready and (postgres or spool_room),
            "postgres": postgres,
            "spool_bytes": spool.size_bytes if spool is not None else None,
            "queued_calls": self._ingestor.queued_calls if self._ingestor is not None else 0,
        }

    def close(self) -> None:
        self.ready = False
        if self.grpc is not None:
            self.grpc.stop()
        if self.retention is not None:
            self.retention.stop()
        if self._ingestor is not None:
            self._ingestor.close()
        if self.forwarder is not None:
            self.forwarder.close()
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
        if not call.billable:  # the provider refused the call (llmmeter.provider_billed=false): nothing to pay
            call.cost = Cost(total=_ZERO, parts={}, price_source="not_billed")
            return
        call.cost = self.catalog.price(call)

    def app(self) -> Starlette:
        assert self.pipeline is not None, "start() first"
        receiver = Receiver(self.pipeline, self.settings.max_body_bytes)

        async def prometheus(request: Request) -> Response:
            if not metrics_token_ok(self.settings.metrics_token, request.headers):
                return JSONResponse({"error": "/metrics needs Authorization: Bearer <LLMMETER_METRICS_TOKEN>"}, 401,
                                    headers={"WWW-Authenticate": "Bearer"})  # fmt: skip
            return Response(generate_latest(self.metrics.registry), media_type=CONTENT_TYPE_LATEST)

        async def healthz(request: Request) -> Response:
            return JSONResponse({"status": "ok"})

        async def readyz(request: Request) -> Response:
            state = await run_in_threadpool(self.readiness)
            return JSONResponse(state, status_code=200 if state["ready"] else 503)

        return Starlette(
            routes=[
                Route("/v1/traces", receiver.traces, methods=["POST"]),
                Route("/v1/metrics", receiver.metrics_export, methods=["POST"]),
                Route("/metrics", prometheus),
                Route("/healthz", healthz),
                Route("/readyz", readyz),
                *api.routes(self),
                *price_routes(self),  # cli/prices.py: GET /api/v1/prices, POST /api/v1/prices/reload
                *doctor_routes(self),  # cli/doctor.py: GET /api/v1/doctor
                *budgets.routes(self),
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
    return uvicorn.Config(collector.app(), host=host, port=port, log_level="warning", access_log=False, lifespan="off")


def _listen(host: str, port: int) -> socket.socket:
    """A listening socket with SO_REUSEPORT, so N collector processes can share one port (the kernel spreads
    connections across them); each process has its own writer, queue and Postgres connection."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)  # so asyncio sets TCP_NODELAY
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def serve(settings: Settings) -> None:
    """Run in the foreground until SIGINT/SIGTERM; then finish in-flight exports, commit, and stop.

    SIGHUP re-reads the price overrides file (keeping the last good prices if it has errors).
    """
    configure_logging(settings.log_format, settings.log_level)
    collector = Collector(settings)
    collector.start()
    try:
        if settings.grpc_port:
            collector.start_grpc(settings.host, settings.grpc_port)
        signal.signal(signal.SIGHUP, lambda sig, frame: collector.reload_prices())
        server = _Server(_uvicorn_config(collector, settings.host, settings.http_port))
        logger.info("llmmeter collector listening on http://%s:%d", settings.host, settings.http_port)
        server.run(sockets=[_listen(settings.host, settings.http_port)] if settings.reuse_port else None)
    finally:
        collector.close()


class BackgroundCollector:
    """A collector serving on a free loopback port in a thread: for tests and the demo."""

    def __init__(self, settings: Settings, grpc: bool = True) -> None:
        self._tmp: weakref.finalize | None = None
        if settings.spool and not settings.spool_dir:  # never share the user's spool with a test collector
            tmp = tempfile.mkdtemp(prefix="llmmeter-spool-")
            self._tmp = weakref.finalize(self, shutil.rmtree, tmp, ignore_errors=True)  # removed even if never run
            settings = Settings(**{**settings.__dict__, "spool_dir": tmp})
        self.collector = Collector(settings)
        self._grpc = grpc
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.url = ""
        self.grpc_target = ""  # host:port of the OTLP/gRPC receiver

    def __enter__(self) -> BackgroundCollector:
        try:
            return self._start()
        except BaseException:
            self.__exit__()
            raise

    def _start(self) -> BackgroundCollector:
        self.collector.start()
        if self._grpc:
            self.grpc_target = f"127.0.0.1:{self.collector.start_grpc('127.0.0.1', 0)}"
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
        if self._tmp is not None:
            self._tmp()

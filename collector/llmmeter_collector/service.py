"""The collector process: wires storage, pricing, ingest, metrics and HTTP routes, and runs them."""

from __future__ import annotations

import contextlib
import logging
import shutil
import signal
import socket
import tempfile
import threading
import weakref
from collections.abc import Callable
from datetime import datetime, timezone
from decimal import Decimal
from types import FrameType

import psycopg
import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from psycopg_pool import ConnectionPool
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from llmmeter_collector.access import bootstrap, oidc
from llmmeter_collector.access.keys import KeyStore, KeyStoreUnavailable
from llmmeter_collector.access.ratelimit import RateLimits
from llmmeter_collector.api import audit, budgets, doctor, focus, prices, prompts, reconcile, usage
from llmmeter_collector.api import routes as api
from llmmeter_collector.api import webhooks as webhook_routes
from llmmeter_collector.api.auth import ApiAuth, metrics_token_ok
from llmmeter_collector.config import Settings
from llmmeter_collector.exporters import buildinfo
from llmmeter_collector.exporters.forward import Forwarder
from llmmeter_collector.exporters.metrics import Metrics
from llmmeter_collector.ingest.grpc_receiver import GrpcReceiver
from llmmeter_collector.ingest.receiver import Pipeline, Receiver
from llmmeter_collector.insights.reconcile import ReconcileScheduler
from llmmeter_collector.ledger import storage
from llmmeter_collector.ledger.embedded import EmbeddedPostgres
from llmmeter_collector.ledger.reprice import Repricer
from llmmeter_collector.ledger.retention import RetentionScheduler
from llmmeter_collector.ledger.spool import Spool
from llmmeter_collector.ledger.writer import POISONED_SEGMENT, PROBLEMS, STORAGE_UNREACHABLE, Ingestor
from llmmeter_collector.llmcall import Cost, LlmCall
from llmmeter_collector.logging_setup import configure_logging
from llmmeter_collector.notify import events, webhooks
from llmmeter_collector.pricing import PriceCatalog, PriceError

logger = logging.getLogger("llmmeter.collector")
_ZERO = Decimal(0)
STARTUP_RETRY_SECONDS = 2.0  # started without Postgres: how often to try migrating again
_KEYS_MARKER = "keys-required"  # in the spool directory: keys were in use the last time Postgres answered


def _refused_by_server(exc: BaseException) -> bool:
    """Postgres answered and refused the connection (no such database, authentication failed, no such role):
    a wrong setting, which starting into the spool would only hide."""
    while exc is not None:
        state = getattr(exc, "sqlstate", None)
        if state and state[:2] in ("28", "3D"):
            return True
        message = str(exc)
        if "does not exist" in message or "authentication failed" in message:
            return True
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    return False


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
        self.oidc = oidc.Verifier(oidc.OidcSettings(
            settings.oidc_issuer, settings.oidc_audience, settings.oidc_discovery_url, settings.oidc_role_claim,
            settings.oidc_projects_claim, settings.oidc_role_map,
        )) if settings.oidc_issuer else None  # OIDC bearer tokens beside API keys (access/oidc.py)  # fmt: skip
        self.rate_limits = RateLimits.from_env()  # API and ingest limits per key, or per address (access/ratelimit.py)
        self._ingestor: Ingestor | None = None
        self._pool: ConnectionPool | None = None
        self._keys: KeyStore | None = None
        self.pipeline: Pipeline | None = None
        self.forwarder: Forwarder | None = None
        self.grpc: GrpcReceiver | None = None
        self.retention: RetentionScheduler | None = None  # drops old partitions on a schedule (ledger/retention.py)
        self.repricer: Repricer | None = None  # retroactive repricing runs (ledger/reprice.py)
        self.reconciler: ReconcileScheduler | None = None  # scheduled reconciles (insights/reconcile.py)
        self.webhooks: webhooks.Dispatcher | None = None  # event webhooks (notify/webhooks.py)
        self.ready = False
        self._ledgers: list[storage.Ledger] = []
        self._closing = threading.Event()
        self._seeded = False
        self._starting: threading.Thread | None = None

    def start(self) -> None:
        """Start serving. With the spool on, Postgres may be down: exports are spooled, and the schema is
        migrated and the spool replayed once Postgres answers (``_bring_up``, retried every few seconds)."""
        if not self.dsn:
            self.embedded = EmbeddedPostgres(self.settings.data_path)
            self.dsn = self.embedded.start()
        self.retention = RetentionScheduler(self.dsn, self.schema, self.settings)  # a bad archive setting fails here
        self.repricer = Repricer(self.dsn, self.schema, self.catalog, on_batch=self.metrics.observe_reprice)
        spool = Spool(self.settings.spool_path, self.settings.spool_max_bytes) if self.settings.spool else None
        self._pool = storage.create_pool(self.dsn, self.schema, open=False)  # opened by _bring_up
        self._keys = KeyStore(
            self._pool, cache_seconds=self.settings.key_cache_seconds, require_keys=self.settings.require_keys
        )
        self._ledgers = [storage.Ledger(self.dsn, self.schema) for _ in range(self.settings.writers)]
        try:
            self._bring_up()
            up = True
        except (psycopg.OperationalError, KeyStoreUnavailable) as exc:
            if spool is None or _refused_by_server(exc):
                raise  # no spool, or a server that answered and refused us: a setting to fix, not an outage
            logger.error(
                "storage problem %s: Postgres is unreachable at start (%s); accepting exports into the spool at %s,"
                " migrating and replaying when it answers",
                STORAGE_UNREACHABLE, str(exc).strip().splitlines()[0] if str(exc).strip() else exc, spool.directory,
            )  # fmt: skip
            up = False
        self.metrics.postgres_up.set(1 if up else 0)
        self.metrics.spool_bytes.set(spool.size_bytes if spool else 0)
        self._ingestor = Ingestor(
            self._ledgers,
            max_queued_calls=self.settings.max_queued_calls,
            max_batch_calls=self.settings.max_batch_calls,
            on_commit=self.metrics.observe,
            spool=spool,
            on_state=self._storage_state,
            on_spooled=self.metrics.spooled_calls.inc,
            partition_days_ahead=self.settings.partition_days_ahead,
            on_rejected=lambda rejected, source: self.metrics.rejected_calls.labels(source).inc(len(rejected)),
            on_quarantined=self.metrics.quarantined_segments.inc,
            storage_ready=up,
        )
        ingestor = self._ingestor
        for reason in PROBLEMS:
            self.metrics.storage_problem.labels(reason).set_function(_problem_gauge(ingestor, reason))
        if self.settings.forward_endpoint:
            self.forwarder = Forwarder(self.settings.forward_endpoint, self.metrics, self.settings.forward_headers)
        # Down since the start: keys cannot be checked. Unless keys are (or were, last time we knew) required,
        # exports are taken unauthenticated into the spool; otherwise they are refused as retryable until then.
        keys = self._keys if up or self._keys_were_required(spool) else None
        self.pipeline = Pipeline(self._ingestor, self.metrics, self.price, keys, self.forwarder)
        self.metrics.queue_depth.set_function(lambda: ingestor.queued_calls)
        self.pipeline.rate_limiter = self.rate_limits.ingest  # ingest limit per key or address (access/ratelimit.py)
        if not up:
            self._starting = threading.Thread(target=self._bring_up_later, name="llmmeter-startup", daemon=True)
            self._starting.start()
        self.ready = True

    def _bring_up(self) -> None:
        """Everything that needs Postgres at start: migrations, retention, counters, keys, partitions ahead."""
        assert self.dsn is not None and self.retention is not None and self._keys is not None
        storage.migrate(self.dsn, self.schema)
        if self.pool.closed:
            self.pool.open()  # now that Postgres answers: its first connection is made at once
        bootstrap.first_admin_key(self.pool, self.settings.bootstrap_admin_key, self.settings.require_keys)
        if not self._seeded:  # once: a retry after a later step failed must not count the totals twice
            self.metrics.seed(api.counter_seed(self.pool))
            self._seeded = True
        required = self._keys.required()  # known before any outage, so exports can be spooled while it is away
        self._remember_keys_required(required)
        self._ledgers[0].ensure_partitions_ahead(datetime.now(timezone.utc).date(), self.settings.partition_days_ahead)
        self.retention.start()
        self._reprice_in_background()
        if self.webhooks is None:
            engine = budgets.engine_for(self)
            self.webhooks = webhooks.Dispatcher(
                lambda: self.pool,
                [events.budget_thresholds(lambda: engine.statuses), events.unpriced_models(lambda: self.pool),
                 events.spend_anomalies(lambda: self.pool)],
                interval=self.settings.webhook_interval_seconds or 30,
                retry_seconds=self.settings.webhook_retry_seconds,
            )  # fmt: skip
            self.webhooks.start()
        if self.settings.reconcile_interval_seconds and self.reconciler is None:
            self.reconciler = ReconcileScheduler(
                lambda: self.pool,
                self.settings.reconcile_interval_seconds,
                self.settings.reconcile_days,
                on_result=self.reconciled,
                on_error=lambda provider, _: self.metrics.reconcile_failures.labels(provider).inc(),
            )
            self.reconciler.start()

    def _reprice_in_background(self) -> None:
        """Resume reprice runs a stopped collector left, and price calls stored unpriced whose model has a price
        now (a catalog upgrade, an overrides reload). Never keeps the collector from serving."""
        assert self.repricer is not None
        try:
            resumed = self.repricer.resume_interrupted()
            if resumed:
                logger.info("resuming reprice runs %s", ", ".join(map(str, resumed)))
            self.repricer.price_new_models()
        except psycopg.Error as exc:
            logger.warning("could not look for calls to reprice: %s", str(exc).strip()[:200])

    def reconciled(self, result: dict[str, object]) -> None:
        """A reconcile's answer: the gauges, and a drift event for the webhooks."""
        self.metrics.observe_reconcile(result)
        drift = events.reconcile_drift(result)
        if drift is not None:
            webhooks.emit(self.pool, *drift)
            if self.webhooks is not None:
                self.webhooks.wake()

    def _bring_up_later(self) -> None:
        """Retry ``_bring_up`` until Postgres answers; then the writers replay the spool (exactly once: the
        ledger is idempotent on each call's key)."""
        assert self._ingestor is not None and self.pipeline is not None
        while not self._closing.wait(STARTUP_RETRY_SECONDS):
            try:
                self._bring_up()
            except Exception as exc:
                logger.warning("Postgres still unreachable, exports go to the spool: %s", str(exc).strip()[:200])
                continue
            self.pipeline.keys = self._keys
            self._ingestor.storage_ready.set()
            logger.info("Postgres reachable: schema migrated, replaying the spool")
            return

    def _storage_state(self, ok: bool, spool_bytes: int) -> None:
        self.metrics.postgres_up.set(1 if ok else 0)
        self.metrics.spool_bytes.set(spool_bytes)

    def _keys_were_required(self, spool: Spool | None) -> bool:
        return self.settings.require_keys or (spool is not None and (spool.directory / _KEYS_MARKER).exists())

    def _remember_keys_required(self, required: bool) -> None:
        """Keep in the spool directory whether keys are in use, for a start during an outage."""
        if not self.settings.spool:
            return
        marker = self.settings.spool_path / _KEYS_MARKER
        try:
            if required and not marker.exists():
                marker.parent.mkdir(parents=True, exist_ok=True)
                marker.write_text("keys are in use: a start without Postgres refuses exports until it can check them\n")
            elif not required:
                marker.unlink(missing_ok=True)
        except OSError:
            logger.warning("cannot write %s", marker)

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
        if self.repricer is not None and self.ready:
            try:
                self.repricer.price_new_models()
            except psycopg.Error as exc:
                logger.warning("could not look for unpriced calls to price: %s", str(exc).strip()[:200])
        return []

    def readiness(self) -> dict[str, object]:
        """Ready when calls reach the ledger: Postgres answers and no problem (``Ingestor.problems``) keeps the
        writer from it. ``accepting``: exports are still taken (into the spool) while not ready."""
        postgres = False
        for _ in range(2):  # a pooled connection that died in an outage fails once, then the pool drops it
            try:
                with self.pool.connection(timeout=2) as conn:
                    conn.execute("SELECT 1")
            except Exception:
                continue
            postgres = True
            break
        ingestor = self._ingestor
        spool = ingestor.spool if ingestor is not None else None
        spool_room = spool is not None and spool.size_bytes < spool.max_bytes and not ingestor.spool_full  # type: ignore[union-attr]
        problems = ingestor.problems() if ingestor is not None else []
        if not postgres and STORAGE_UNREACHABLE not in problems:
            problems.insert(0, STORAGE_UNREACHABLE)
        if postgres and ingestor is not None and not ingestor.problems():
            self.metrics.postgres_up.set(1)
        elif not postgres:
            self.metrics.postgres_up.set(0)
        if postgres and self._keys is not None:
            with contextlib.suppress(Exception):  # Postgres just answered; a failure here changes nothing
                self._remember_keys_required(self._keys.required())
        writing = not (set(problems) - {POISONED_SEGMENT})  # a quarantined segment no longer blocks writes
        return {
            "ready": self.ready and postgres and writing,
            "accepting": self.ready and ((postgres and writing) or spool_room),
            "reasons": problems,
            "postgres": postgres,
            "spool_bytes": spool.size_bytes if spool is not None else None,
            "quarantined_segments": len(spool.quarantined()) if spool is not None else 0,
            "queued_calls": ingestor.queued_calls if ingestor is not None else 0,
        }

    def close(self) -> None:
        self.ready = False
        self._closing.set()
        if self._starting is not None:
            self._starting.join(30)
        if self.grpc is not None:
            self.grpc.stop()
        if self.retention is not None:
            self.retention.stop()
        if self.reconciler is not None:
            self.reconciler.stop()
        if self.webhooks is not None:
            self.webhooks.stop()
        if self.repricer is not None:
            self.repricer.close()  # after the batch in progress; an unfinished run resumes at the next start
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
        """API and ingest keys (see ``llmmeter_collector.access.keys``)."""
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
                *prices.routes(self),  # GET /api/v1/prices, POST /api/v1/prices/reload
                *doctor.routes(self),  # GET /api/v1/doctor
                *budgets.routes(self),  # budgets and the cost report
                *reconcile.routes(self),  # GET /api/v1/reconcile: the ledger against the provider's reports
                *focus.routes(self),  # FOCUS export and import
                *prompts.routes(self),  # prompts, prompt families, experiments
                *audit.routes(self),  # GET /api/v1/audit
                *webhook_routes.routes(self),  # event webhook subscriptions and their delivery logs
                *usage.routes(self),  # GET /api/v1/usage: per day, project, feature and user (llmmeter export stripe)
            ],
            middleware=[Middleware(ApiAuth, collector=self)],  # API keys, roles, projects, rate limits
        )


def _problem_gauge(ingestor: Ingestor, reason: str) -> Callable[[], float]:
    return lambda: 1.0 if reason in ingestor.problems() else 0.0


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

"""The embedded Postgres used when no DSN is configured: a real server from the ``pgserver`` package.

Its data lives under the llmmeter data directory and is reused between runs. The server is stopped by
``stop()`` when this process started it; a server another process started is left running.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

logger = logging.getLogger("llmmeter.collector")


class EmbeddedPostgres:
    def __init__(self, data_dir: Path) -> None:
        self.pgdata = data_dir / "pgdata"
        self._server: Any = None
        self._started_here = False

    def start(self) -> str:
        """Start (or attach to) the server and return its DSN."""
        with warnings.catch_warnings():  # platformdirs warns when XDG_RUNTIME_DIR is unset (containers, CI)
            warnings.simplefilter("ignore")
            import pgserver
            from pgserver.utils import PostmasterInfo

        logging.getLogger("pgserver").setLevel(logging.WARNING)
        self.pgdata.parent.mkdir(parents=True, exist_ok=True)
        running = PostmasterInfo.read_from_pgdata(self.pgdata) if self.pgdata.exists() else None
        self._started_here = running is None or not running.is_running()
        # cleanup_mode=None: pgserver's own reference counting across processes can leave a stale pid
        # behind after a crash and then never stop; this class decides when to stop instead.
        self._server = pgserver.get_server(self.pgdata, cleanup_mode=None)
        logger.info("embedded Postgres running with data in %s", self.pgdata)
        return str(self._server.get_uri())

    def stop(self) -> None:
        if self._server is None:
            return
        server, self._server = self._server, None
        if not self._started_here:
            return
        from pgserver._commands import pg_ctl  # type: ignore[attr-defined]

        try:
            pg_ctl(["-w", "-m", "fast", "stop"], pgdata=self.pgdata, user=server.system_user)
        except Exception as exc:  # already stopped, or cannot be stopped: say so, do not crash shutdown
            logger.warning("could not stop the embedded Postgres in %s: %r", self.pgdata, exc)

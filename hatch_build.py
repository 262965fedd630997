"""Build hook: compile the collector's OTLP attribute reader (``llmmeter_collector/ingest/_otlp_fields.c``).

Optional by design: without a C compiler (or the Python headers) the wheel is built without it and the
collector reads attributes in Python (``normalize._fields``), slower but the same. A wheel with it is
platform-specific; the SDK part is pure Python either way.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sysconfig
import tempfile
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

SOURCE = Path("collector/llmmeter_collector/ingest/_otlp_fields.c")


class CustomBuildHook(BuildHookInterface):  # type: ignore[type-arg]
    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if self.target_name != "wheel" or os.environ.get("LLMMETER_NO_EXTENSION"):
            return
        source = Path(self.root) / SOURCE
        name = "_otlp_fields" + (sysconfig.get_config_var("EXT_SUFFIX") or ".so")
        # An editable install imports from the source tree; a wheel gets the file from a scratch directory.
        out_dir = source.parent if version == "editable" else Path(tempfile.mkdtemp(prefix="llmmeter-build-"))
        if version != "editable":
            self._scratch = out_dir  # removed in finalize(), once the wheel holds the file
        out = out_dir / name
        compiler = shlex.split(os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc")
        include = sysconfig.get_paths()["include"]
        command = [*compiler, "-O2", "-fPIC", "-shared", f"-I{include}", str(source), "-o", str(out)]
        try:
            subprocess.run(command, check=True, capture_output=True, text=True)
        except (OSError, subprocess.CalledProcessError) as exc:
            detail = getattr(exc, "stderr", "") or str(exc)
            self.app.display_warning(
                f"llmmeter: the C attribute reader was not built ({detail.strip()[:500]}); "
                "the collector reads OTLP attributes in Python instead"
            )
            return
        build_data["pure_python"] = False
        build_data["infer_tag"] = True
        if version != "editable":
            build_data["force_include"][str(out)] = f"llmmeter_collector/ingest/{name}"

    def finalize(self, version: str, build_data: dict[str, Any], artifact_path: str) -> None:
        """Remove the scratch directory of the compiled reader: a build leaves nothing in the temp directory."""
        scratch = getattr(self, "_scratch", None)
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)

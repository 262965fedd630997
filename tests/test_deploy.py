"""The docker-compose stack and the collector image, checked without a Docker engine (none runs here).

`docker-compose config` (Debian's docker-compose, which needs no daemon) validates the file against the
Compose schema and resolves `.env.example`; the rest cross-checks the stack against the repository: every
bind-mounted path exists, every host and port that the Prometheus, Alertmanager and Grafana configs use is a
compose service listening on that port, the collector's `LLMMETER_*` variables are settings it reads, and the
Dockerfile builds from files the build context holds, runs as non-root, pins its base and installs only the
collector extra.
"""

from __future__ import annotations

import fnmatch
import os
import re
import shutil
import stat
import subprocess
import sys
import zipfile
from dataclasses import fields
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
import tomllib
import yaml

from llmmeter_collector.config import Settings

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
_STACK_PREFIXES = ("POSTGRES_", "GRAFANA_", "LLMMETER_", "ALERTMANAGER_", "AWS_", "PROMETHEUS_", "COMPOSE_")
LONG_RUNNING = ("postgres", "collector", "alertmanager", "prometheus", "grafana")


def _compose_command() -> list[str]:
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    found = shutil.which("docker-compose")
    assert found, "docker-compose is needed to validate docker-compose.yml: `make debs` installs it"
    return [found]


def _compose_config(env_file: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(_STACK_PREFIXES)}
    return subprocess.run(
        [*_compose_command(), "--project-directory", str(ROOT), "--env-file", str(env_file), "-f", str(COMPOSE),
         "config"],
        capture_output=True, text=True, timeout=60, env=env, cwd=ROOT,
    )  # fmt: skip


def _env_example() -> dict[str, str]:
    out = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            out[key.strip()] = value.strip()
    return out


@pytest.fixture(scope="module")
def resolved() -> dict[str, Any]:
    """The compose file as the Compose tool resolves it with the example .env."""
    result = _compose_config(ENV_EXAMPLE)
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


@pytest.fixture(scope="module")
def services(resolved: dict[str, Any]) -> dict[str, Any]:
    return resolved["services"]


def _environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: "" if v is None else str(v) for k, v in env.items()}


def _container_ports(service: dict[str, Any]) -> set[int]:
    ports = {int(str(p).split("/")[0]) for p in service.get("expose", [])}
    for p in service.get("ports", []):
        if isinstance(p, dict):
            ports.add(int(p["target"]))
        else:
            ports.add(int(str(p).split("/")[0].rsplit(":", 1)[-1]))
    return ports


def _published(service: dict[str, Any]) -> dict[int, str]:
    """Host port -> host address it binds ('' for all addresses)."""
    out = {}
    for p in service.get("ports", []):
        if isinstance(p, dict):  # `docker compose` (v2) prints the long form
            out[int(p["published"])] = p.get("host_ip", "")
            continue
        parts = str(p).split("/")[0].split(":")
        host_ip = parts[0] if len(parts) == 3 else ""
        out[int(parts[-2])] = host_ip
    return out


def _bind_mounts(service: dict[str, Any]) -> list[tuple[Path, str]]:
    """(source in the repository, target in the container) of every bind mount."""
    out = []
    for volume in service.get("volumes", []):
        if isinstance(volume, dict):
            if volume.get("type") == "bind":
                out.append((Path(volume["source"]), volume["target"]))
            continue
        source, target = volume.split(":")[:2]
        if source.startswith(("/", ".")):
            out.append((Path(source) if source.startswith("/") else ROOT / source, target))
    return out


def _named_volumes(service: dict[str, Any]) -> list[str]:
    out = []
    for volume in service.get("volumes", []):
        if isinstance(volume, dict):
            if volume.get("type") == "volume":
                out.append(volume["source"])
        elif not volume.startswith(("/", ".")):
            out.append(volume.split(":")[0])
    return out


def _repo_path(service: dict[str, Any], container_path: str) -> Path | None:
    """The repository file that a container path comes from through a bind mount, if any."""
    for source, target in _bind_mounts(service):
        if container_path == target:
            return source
        if container_path.startswith(target.rstrip("/") + "/"):
            return source / container_path[len(target.rstrip("/")) + 1 :]
    return None


def _host_port(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host, int(port)


def _assert_reaches(services: dict[str, Any], address: str, what: str, own: str | None = None) -> str:
    host, port = _host_port(address)
    if host in ("localhost", "127.0.0.1") and own:
        host = own
    assert host in services, f"{what}: host {host!r} is not a compose service ({', '.join(services)})"
    assert port in _container_ports(services[host]), f"{what}: service {host} does not listen on {port}"
    return host


def _flag(args: list[str] | str, name: str) -> str | None:
    items = args.split() if isinstance(args, str) else [str(a) for a in args]
    for item in items:
        if item.startswith(f"--{name}="):
            return item.split("=", 1)[1]
    return None


# ---------------------------------------------------------------------------------------------- the compose file


def test_compose_validates_and_needs_the_secrets_from_env(tmp_path: Path) -> None:
    assert _compose_config(ENV_EXAMPLE).returncode == 0
    incomplete = tmp_path / ".env"
    incomplete.write_text("".join(f"{k}={v}\n" for k, v in _env_example().items() if k != "POSTGRES_PASSWORD"))
    result = _compose_config(incomplete)
    assert result.returncode != 0
    assert "set POSTGRES_PASSWORD in .env" in result.stderr


def test_every_variable_the_compose_file_uses_is_in_env_example() -> None:
    used = set(re.findall(r"(?<!\$)\$\{([A-Z0-9_]+)", COMPOSE.read_text()))
    example = _env_example()
    assert used - set(example) == set(), "document these in .env.example"
    assert set(example) - used - {"COMPOSE_PROJECT_NAME"} == set(), ".env.example has variables nothing reads"


def test_services_have_pinned_images_health_checks_volumes_and_wait_for_health(
    services: dict[str, Any], resolved: dict[str, Any]
) -> None:
    assert set(LONG_RUNNING) <= set(services)
    built_here = {service["image"] for service in services.values() if "build" in service and "image" in service}
    for name, service in services.items():
        if "image" in service and "build" not in service and service["image"] not in built_here:
            image = service["image"]
            tag = image.split("@")[0].rsplit(":", 1)[-1] if ":" in image.split("/")[-1] else ""
            assert re.search(r"\d+\.\d+", tag), f"{name}: image {image!r} is not pinned to a version"
        for dependency, condition in (service.get("depends_on") or {}).items():
            wanted = "service_healthy" if dependency in LONG_RUNNING else "service_completed_successfully"
            assert condition["condition"] == wanted, f"{name} -> {dependency}"
    for name in LONG_RUNNING:
        assert services[name].get("healthcheck", {}).get("test"), f"{name} has no health check"
        assert services[name].get("restart") == "unless-stopped"
        named = _named_volumes(services[name])
        if name != "collector" or named:
            assert named and set(named) <= set(resolved["volumes"]), f"{name}: data not on a named volume"
    assert services["collector"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert services["grafana"]["depends_on"]["prometheus"]["condition"] == "service_healthy"
    # only the collector and Grafana are reachable from other machines; Prometheus/Alertmanager have no auth
    assert _published(services["prometheus"]) == {9090: "127.0.0.1"}
    assert _published(services["alertmanager"]) == {9093: "127.0.0.1"}
    assert "ports" not in services["postgres"]


def test_every_bind_mounted_path_exists_in_the_repository(services: dict[str, Any]) -> None:
    mounts = [(name, source) for name, s in services.items() for source, _ in _bind_mounts(s)]
    assert len(mounts) >= 4
    for name, source in mounts:
        assert source.exists(), f"{name} mounts {source}, which is not in the repository"
        assert ROOT in source.resolve().parents, f"{name} mounts {source} from outside the repository"


# ------------------------------------------------------------------------------------------------- the collector


def test_collector_environment_is_settings_the_collector_reads(services: dict[str, Any]) -> None:
    env = _environment(services["collector"])
    known = {"LLMMETER_" + f.name.upper() for f in fields(Settings)}
    ours = {k for k in env if k.startswith("LLMMETER_")}
    assert ours - known == set(), "the collector reads no such setting"
    settings = Settings.from_env(env)  # the values are valid too
    assert settings.host == "0.0.0.0"
    assert settings.retention_days == 90

    dsn = urlparse(env["LLMMETER_DATABASE_URL"])
    pg = services["postgres"]
    _assert_reaches(services, f"{dsn.hostname}:{dsn.port}", "LLMMETER_DATABASE_URL")
    pg_env = _environment(pg)
    assert dsn.hostname == "postgres" and dsn.path.lstrip("/") == pg_env["POSTGRES_DB"]
    assert dsn.username == pg_env["POSTGRES_USER"] and dsn.password == pg_env["POSTGRES_PASSWORD"]
    assert _environment(services["grafana-db-role"])["PGPASSWORD"] == pg_env["POSTGRES_PASSWORD"]

    ports = _container_ports(services["collector"])
    assert {settings.http_port, settings.grpc_port} <= ports
    assert set(_published(services["collector"])) == {settings.http_port, settings.grpc_port}
    health = " ".join(services["collector"]["healthcheck"]["test"])
    assert f"127.0.0.1:{settings.http_port}/readyz" in health
    dockerfile = _dockerfile()
    assert {str(settings.http_port), str(settings.grpc_port)} <= set(" ".join(dockerfile.get("EXPOSE", [])).split())
    assert services["collector"]["build"]["dockerfile"] == "Dockerfile"


# ---------------------------------------------------------------------------------------- Prometheus and alerts


def test_prometheus_config_rules_and_targets_match_the_stack(services: dict[str, Any]) -> None:
    prom = services["prometheus"]
    command = " ".join(prom["command"]) if isinstance(prom["command"], list) else prom["command"]
    config_path = _flag(command, "config.file")
    assert config_path is not None
    repo_config = _repo_path(prom, config_path)
    assert repo_config == ROOT / "prometheus" / "prometheus.yml"
    config = yaml.safe_load(repo_config.read_text())
    listen = _flag(command, "web.listen-address") or ":9090"
    assert int(listen.rsplit(":", 1)[1]) in _container_ports(prom)

    for pattern in config.get("rule_files", []):
        matched = list(repo_config.parent.glob(pattern))
        assert matched, f"rule_files {pattern!r} matches no file under the mounted prometheus/"
    jobs = {}
    for job in config["scrape_configs"]:
        for static in job.get("static_configs", []):
            for target in static["targets"]:
                jobs[job["job_name"]] = _assert_reaches(services, target, f"scrape job {job['job_name']}", "prometheus")
    assert jobs["llmmeter"] == "collector"
    job = next(j for j in config["scrape_configs"] if j["job_name"] == "llmmeter")
    assert job.get("metrics_path", "/metrics") == "/metrics"
    # the scrape sends the token the collector's /metrics requires: the file is written from the same variable
    token_file = "/etc/prometheus/" + job["authorization"]["credentials_file"]  # relative to the config file
    written = re.search(rf'printf \S+ "\$\$?(\w+)" > {re.escape(token_file)}\b', command)
    assert written, f"nothing writes {token_file} in the Prometheus container"
    assert written.group(1) == "LLMMETER_METRICS_TOKEN"
    collector_env, prom_env = _environment(services["collector"]), _environment(prom)
    assert prom_env["LLMMETER_METRICS_TOKEN"] == collector_env["LLMMETER_METRICS_TOKEN"]
    assert any(str(t).split(":")[0] == str(Path(token_file).parent) for t in prom.get("tmpfs", [])), (
        "the token must live in a tmpfs, not in the read-only config mount"
    )
    assert (ROOT / "prometheus" / "secrets").is_dir()  # the tmpfs mount point inside the bind mount
    for am in config["alerting"]["alertmanagers"]:
        for static in am["static_configs"]:
            for target in static["targets"]:
                assert _assert_reaches(services, target, "alerting") == "alertmanager"


def _volume_mounts(service: dict[str, Any]) -> list[tuple[str, str]]:
    """(named volume, target) of every named-volume mount, long or short syntax."""
    out = []
    for volume in service.get("volumes", []):
        if isinstance(volume, dict):
            if volume.get("type") == "volume":
                out.append((volume["source"], volume["target"]))
        elif not volume.startswith(("/", ".")):
            source, target = volume.split(":")[:2]
            out.append((source, target))
    return out


def test_alertmanager_reads_the_config_the_render_job_writes_from_the_environment(services: dict[str, Any]) -> None:
    am, job = services["alertmanager"], services["alertmanager-config"]
    config_path = _flag(am["command"], "config.file")
    assert config_path is not None
    listen = _flag(am["command"], "web.listen-address") or ":9093"
    assert int(listen.rsplit(":", 1)[1]) in _container_ports(am)
    assert am["depends_on"]["alertmanager-config"]["condition"] == "service_completed_successfully"
    template, out_dir = job["command"]
    assert _repo_path(job, template) == ROOT / "prometheus" / "alertmanager.yml"
    volume = {target: source for source, target in _volume_mounts(job)}[out_dir]
    am_volumes = dict(_volume_mounts(am))
    assert config_path == am_volumes[volume] + "/alertmanager.yml"
    assert job["user"] == "65534:65534"  # Alertmanager's user reads the 0600 secret files
    module = (ROOT / "collector" / "llmmeter_collector" / "budgets" / "alertmanager.py").read_text()
    assert set(re.findall(r"ALERTMANAGER_[A-Z_]+[A-Z]", module)) <= set(_environment(job))
    assert "example.com" not in (ROOT / "prometheus" / "alertmanager.yml").read_text()


def _render(tmp_path: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("ALERTMANAGER_")}
    return subprocess.run(
        [sys.executable, "-m", "llmmeter_collector.budgets.alertmanager", str(ROOT / "prometheus" / "alertmanager.yml"),
         str(tmp_path)],
        env={**clean, **env}, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_the_rendered_alertmanager_config_has_the_receivers_of_the_environment(tmp_path: Path) -> None:
    amtool = shutil.which("amtool") or "/usr/bin/amtool"
    env = {
        "ALERTMANAGER_WEBHOOK_URL": "https://hooks.internal/alertmanager",
        "ALERTMANAGER_WEBHOOK_TOKEN": "t0ken",
        "ALERTMANAGER_SLACK_WEBHOOK_URL": "https://hooks.slack.com/services/T/B/X",
        "ALERTMANAGER_EMAIL_TO": "oncall@corp.internal",
        "ALERTMANAGER_SMTP_SMARTHOST": "smtp.corp.internal:587",
        "ALERTMANAGER_SMTP_FROM": "llmmeter@corp.internal",
        "ALERTMANAGER_SMTP_PASSWORD": "pw",
    }
    full = _render(tmp_path / "full", env)
    assert full.returncode == 0, full.stderr
    rendered = tmp_path / "full" / "alertmanager.yml"
    check = subprocess.run([amtool, "check-config", str(rendered)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    config = yaml.safe_load(rendered.read_text())
    kinds = {r["name"]: sorted(k for k in r if k.endswith("_configs")) for r in config["receivers"]}
    assert kinds["budget-critical"] == ["email_configs", "slack_configs", "webhook_configs"]
    assert kinds["webhook"] == ["webhook_configs"]
    assert config["receivers"][0]["webhook_configs"][0]["url"] == env["ALERTMANAGER_WEBHOOK_URL"]
    for name, content in (("webhook_token", "t0ken"), ("smtp_password", "pw"), ("slack_webhook_url", env[
        "ALERTMANAGER_SLACK_WEBHOOK_URL"])):  # fmt: skip
        secret = tmp_path / "full" / "secrets" / name
        assert secret.read_text() == content and stat.S_IMODE(secret.stat().st_mode) == 0o600
        assert str(secret) in rendered.read_text() and content not in rendered.read_text()
    routed = subprocess.run(
        [amtool, "config", "routes", "test", f"--config.file={rendered}", "budget=x", "severity=critical"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert routed.stdout.strip() == "budget-critical"
    empty = _render(tmp_path / "empty", {})
    assert empty.returncode == 0 and "no receivers configured: alerts go nowhere" in empty.stdout
    bad = _render(tmp_path / "bad", {"ALERTMANAGER_EMAIL_TO": "a@b.c", "ALERTMANAGER_SMTP_SMARTHOST": "smtp"})
    assert bad.returncode == 2 and bad.stderr.strip() == (
        "alertmanager config: ALERTMANAGER_SMTP_SMARTHOST must be host:port, got 'smtp'"
    )
    assert not (tmp_path / "bad" / "alertmanager.yml").exists()


# ----------------------------------------------------------------------------------------------------- Grafana


def _substitute(node: Any, env: dict[str, str], where: str) -> Any:
    """Grafana expands $VAR / ${VAR} in the values of provisioning files from its environment."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        assert name in env, f"{where} uses ${name}, which the grafana service does not set"
        return env[name]

    if isinstance(node, dict):
        return {k: _substitute(v, env, where) for k, v in node.items()}
    if isinstance(node, list):
        return [_substitute(v, env, where) for v in node]
    if isinstance(node, str):
        return re.sub(r"\$\{(\w+)\}|\$(\w+)", value, node)
    return node


def test_grafana_provisioning_is_mounted_and_its_datasources_reach_the_stack(services: dict[str, Any]) -> None:
    grafana = services["grafana"]
    env = _environment(grafana)
    provisioning = _repo_path(grafana, "/etc/grafana/provisioning")
    assert provisioning == ROOT / "grafana" / "provisioning"
    datasource_files = sorted((provisioning / "datasources").glob("*.y*ml"))
    assert datasource_files
    by_type: dict[str, dict[str, Any]] = {}
    for file in datasource_files:
        config = _substitute(yaml.safe_load(file.read_text()), env, str(file.relative_to(ROOT)))
        for source in config["datasources"]:
            by_type[source["type"]] = source
    prom_url = urlparse(by_type["prometheus"]["url"])
    assert _assert_reaches(services, f"{prom_url.hostname}:{prom_url.port}", "Prometheus datasource") == "prometheus"
    pg = by_type["grafana-postgresql-datasource"]
    assert _assert_reaches(services, pg["url"], "Postgres datasource") == "postgres"
    assert pg["jsonData"]["database"] == _environment(services["postgres"])["POSTGRES_DB"]
    role_migration = (ROOT / "collector/llmmeter_collector/ledger/migrations/0040_grafana_role.sql").read_text()
    assert f"CREATE ROLE {pg['user']} " in role_migration
    role_job = services["grafana-db-role"]
    assert f"ALTER ROLE {pg['user']} PASSWORD" in " ".join(role_job["command"])
    assert pg["secureJsonData"]["password"] == _environment(role_job)["GRAFANA_DB_PASSWORD"]

    for file in sorted((provisioning / "dashboards").glob("*.y*ml")):
        for provider in yaml.safe_load(file.read_text())["providers"]:
            dashboards = _repo_path(grafana, provider["options"]["path"])
            assert dashboards == ROOT / "grafana" / "dashboards", f"{file.name}: dashboards path is not mounted"
            assert list(dashboards.glob("*.json"))
    home = env.get("GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH")
    if home:
        home_file = _repo_path(grafana, home)
        assert home_file is not None and home_file.is_file()


# ---------------------------------------------------------------------------------------------------- Dockerfile


def _dockerfile() -> dict[str, list[str]]:
    """Instructions of the final stage (and ARG/FROM of all stages), continuation lines joined."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, rest = line.partition(" ")
        out.setdefault(keyword.upper(), []).append(rest.strip())
    return out


def _dockerignore() -> list[tuple[bool, str]]:
    rules = []
    for line in (ROOT / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            rules.append((line.startswith("!"), line.lstrip("!").rstrip("/")))
    return rules


def _in_context(relative: str, rules: list[tuple[bool, str]]) -> bool:
    """Docker's rule: the last matching pattern decides; a path under an excluded directory may be re-included."""
    included = True
    parts = relative.split("/")
    for include, pattern in rules:
        for n in range(1, len(parts) + 1):
            prefix = "/".join(parts[:n])
            if fnmatch.fnmatchcase(prefix, pattern) or (
                pattern.startswith("**/") and fnmatch.fnmatchcase(parts[n - 1], pattern[3:])
            ):
                included = include
                break
    return included


def _context_files() -> list[str]:
    rules = _dockerignore()
    files = []
    for directory, subdirs, names in os.walk(ROOT):
        subdirs[:] = [d for d in subdirs if d not in (".git", ".venv", "node_modules")]
        for name in names:
            relative = (Path(directory) / name).relative_to(ROOT).as_posix()
            if _in_context(relative, rules):
                files.append(relative)
    return sorted(files)


def _locked(path: Path) -> dict[str, list[str]]:
    """{package: [hashes]} of a hash-locked requirements file."""
    out: dict[str, list[str]] = {}
    name = ""
    for line in path.read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9_.\-]+)==\S+", line)
        if match:
            name = re.sub(r"[-_.]+", "-", match.group(1)).lower()
            out[name] = []
        out.setdefault(name, []).extend(re.findall(r"--hash=sha256:([0-9a-f]{64})", line))
    out.pop("", None)
    return out


def test_the_image_installs_every_dependency_from_a_hash_locked_file() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    run = next(r for r in _dockerfile()["RUN"] if "pip install" in r)
    assert "--require-hashes --no-deps -r requirements/build.lock" in run
    assert '--require-hashes --no-deps -r "$lock"' in run and "--no-build-isolation" in run and "pip check" in run
    assert _in_context("requirements/collector.lock", _dockerignore())
    extras = {"collector.lock": ["collector"], "collector-archive.lock": ["collector", "archive"]}
    for lock, names in extras.items():
        locked = _locked(ROOT / "requirements" / lock)
        assert locked and all(hashes for hashes in locked.values()), f"{lock}: a package without a hash"
        wanted = list(project["dependencies"])
        for extra in names:
            wanted += [r for r in project["optional-dependencies"][extra] if not r.startswith("llmmeter[")]
        wanted += project["optional-dependencies"]["cli"]
        for requirement in wanted:
            if "python_version < '3.11'" in requirement:
                continue  # the image is Python 3.12
            name = re.sub(r"[-_.]+", "-", re.split(r"[\[<>=;~! ]", requirement, maxsplit=1)[0]).lower()
            assert name in locked, f"{lock} does not pin {name} (run make lock)"
    assert "hatchling" in _locked(ROOT / "requirements" / "build.lock")


def test_dockerfile_is_pinned_non_root_and_installs_only_the_collector_extra() -> None:
    instructions = _dockerfile()
    args = dict(a.split("=", 1) for a in instructions.get("ARG", []) if "=" in a)
    bases = [f.split()[0] for f in instructions["FROM"]]
    for base in bases:
        image = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], base)
        name, _, tag = image.split("@")[0].partition(":")
        assert name == "python" and re.match(r"^3\.1[1-9]\.\d+-slim", tag), f"base {image!r} is not a pinned slim"
    users = instructions["USER"]
    assert users and users[-1].split(":")[0] not in ("0", "root")
    installs = [r for r in instructions["RUN"] if "pip install" in r]
    assert len(installs) == 1 and '".[${LLMMETER_EXTRAS}]"' in installs[0]
    assert args["LLMMETER_EXTRAS"] == "collector"
    assert instructions["ENTRYPOINT"] == ['["llmmeter"]'] and instructions["CMD"] == ['["serve"]']
    assert instructions.get("HEALTHCHECK")
    assert any("LLMMETER_HOST=0.0.0.0" in e for e in instructions["ENV"])

    context = _context_files()
    for copy in instructions["COPY"]:
        if copy.startswith("--from="):
            continue
        *sources, _ = copy.split()
        for source in sources:
            assert (ROOT / source).exists(), f"COPY {source}: not in the repository"
            assert any(f == source or f.startswith(source.rstrip("/") + "/") for f in context), (
                f"COPY {source}: excluded by .dockerignore"
            )
    assert not any(f.startswith(("tests/", "bench/", "grafana/", ".env")) for f in context)
    assert not any("__pycache__" in f for f in context)


def test_the_build_context_builds_a_collector_wheel(tmp_path: Path) -> None:
    """What the image's `pip install` gets: the context after .dockerignore, built into a wheel."""
    context = tmp_path / "context"
    for relative in _context_files():
        (context / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / relative, context / relative)
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(tmp_path / "dist"), str(context)],
        check=True,
        timeout=300,
        env={**os.environ, "TMPDIR": str(scratch)},
    )
    assert not list(scratch.glob("llmmeter-build-*")), "the build left its scratch directory behind"
    (wheel,) = (tmp_path / "dist").glob("llmmeter-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    migrations = {p.name for p in (ROOT / "collector/llmmeter_collector/ledger/migrations").glob("*.sql")}
    assert migrations and {f"llmmeter_collector/ledger/migrations/{m}" for m in migrations} <= set(names)
    assert "llmmeter_collector/ledger/retention.py" in names and "llmmeter/__init__.py" in names
    assert "llmmeter_collector/pricing/prices.schema.json" in names


def test_readme_self_host_documents_the_published_ports(services: dict[str, Any]) -> None:
    section = (ROOT / "docs" / "self-hosting.md").read_text().split("\n## ", 1)[0]
    assert "docker compose up -d" in section and "cp .env.example .env" in section
    for name, service in services.items():
        for port in _published(service):
            assert f"`{port}`" in section, f"docs/self-hosting.md does not document port {port} ({name})"

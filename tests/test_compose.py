"""docker-compose.yml, checked offline (no Docker here): the stack a new operator starts has the
proxy wired to the right services and ports, restarts, health checks on /readyz, migrations before
anything serves, and every variable it needs in .env.example."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from scripts.nginx_proxy import PLACEHOLDER, TEMPLATE, render
from tests.conftest import ROOT

SERVING = ["web", "ws", "proxy", "dispatcher", "gpu_worker", "cpu_worker"]
APP = ["migrate", "web", "ws", "dispatcher", "gpu_worker", "cpu_worker"]


@pytest.fixture(scope="module")
def services() -> dict[str, Any]:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    declared = set(compose["volumes"])
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            assert source.startswith(("/", ".", "$")) or source in declared, f"{name}: volume {source}"
    found: dict[str, Any] = compose["services"]
    return found


def test_it_runs_the_whole_product_with_restarts(services: dict[str, Any]) -> None:
    assert {"proxy", "web", "ws", "dispatcher", "gpu_worker", "postgres", "redis", "migrate"} <= set(services)
    for name in [*SERVING, "postgres", "redis", "minio"]:
        assert services[name]["restart"] == "unless-stopped", name
    assert services["migrate"]["restart"] == services["minio_bucket"]["restart"] == "no"
    # A first image without a GPU: the built-in model in the cpu profile; S3 only when asked.
    assert (services["gpu_worker"]["profiles"], services["cpu_worker"]["profiles"]) == (["gpu"], ["cpu"])
    assert "--device" in services["cpu_worker"]["command"] and "cpu" in services["cpu_worker"]["command"]
    assert services["minio"]["profiles"] == services["minio_bucket"]["profiles"] == ["s3"]
    assert services["gpu_worker"]["stop_grace_period"] == "10m"  # SIGTERM lets the job finish


def listening_port(service: dict[str, Any]) -> str:
    command = service["command"]
    if command[0] == "gunicorn":
        return str(service["environment"]["WEB_BIND"]).rsplit(":", 1)[1]
    return str(command[command.index("-p") + 1])


def test_web_and_ws_are_healthy_only_when_ready(services: dict[str, Any]) -> None:
    for name in ("web", "ws"):
        check = services[name]["healthcheck"]["test"]
        assert check == ["CMD", "python", "scripts/readyz.py", listening_port(services[name])], name
    assert "/readyz" in (ROOT / "scripts" / "readyz.py").read_text()
    assert services["proxy"]["depends_on"] == {
        "web": {"condition": "service_healthy"},
        "ws": {"condition": "service_healthy"},
    }


def test_migrations_and_static_files_come_first_once(services: dict[str, Any]) -> None:
    migrate = services["migrate"]
    assert "migrate --no-input" in migrate["command"][-1] and "collectstatic" in migrate["command"][-1]
    for name in ("web", "ws", "dispatcher", "gpu_worker", "cpu_worker"):
        condition = services[name]["depends_on"]["migrate"]["condition"]
        assert condition == "service_completed_successfully", name
    # collectstatic writes the volume that the proxy serves and the web tier reads its manifest from.
    static_root = migrate["environment"]["STATIC_ROOT"]
    assert f"static:{static_root}" in migrate["volumes"]
    assert f"static:{static_root}:ro" in services["web"]["volumes"]
    proxy_static = services["proxy"]["environment"]["ATELIER_STATIC_ROOT"]
    assert f"static:{proxy_static}:ro" in services["proxy"]["volumes"]
    assert migrate["environment"]["ATELIER_HASHED_STATIC"] == "1"


def test_the_proxy_sends_each_kind_of_request_to_its_service(services: dict[str, Any]) -> None:
    proxy = services["proxy"]["environment"]
    assert proxy["ATELIER_WEB_SERVERS"] == f"server web:{listening_port(services['web'])};"
    assert proxy["ATELIER_WS_SERVERS"] == f"server ws:{listening_port(services['ws'])};"
    for name in APP:  # exactly one proxy in front, and the same body limit on both sides
        environment = services[name]["environment"]
        assert environment["ATELIER_TRUSTED_PROXIES"] == "1", name
        assert environment["ATELIER_REQUEST_MAX_BYTES"] == proxy["ATELIER_REQUEST_MAX_BYTES"], name
    assert services["proxy"]["build"]["dockerfile"] == "deploy/nginx/Dockerfile"
    dockerfile = (ROOT / "deploy" / "nginx" / "Dockerfile").read_text()
    assert "apt-get install" in dockerfile and " nginx " in dockerfile  # Debian's, as make cluster's
    assert "COPY deploy/nginx/atelier.conf" in dockerfile


def test_the_proxy_image_fills_the_shipped_configuration_as_the_cluster_does(
    services: dict[str, Any], tmp_path: Path
) -> None:
    values = {name: str(value) for name, value in services["proxy"]["environment"].items()}
    values = {
        name: value.replace("${ATELIER_REQUEST_MAX_BYTES:-22020096}", "22020096")
        for name, value in values.items()
    }
    assert set(PLACEHOLDER.findall(TEMPLATE.read_text())) <= set(values)
    site = tmp_path / "atelier.conf"
    environment = {
        **values,
        "PATH": "/usr/bin:/bin",
        "NGINX_TEMPLATE": str(TEMPLATE),
        "NGINX_SITE": str(site),
    }
    entrypoint = ROOT / "deploy" / "nginx" / "entrypoint.sh"
    subprocess.run(["sh", str(entrypoint), "true"], env=environment, check=True)
    assert site.read_text() == render(TEMPLATE.read_text(), values)
    assert "listen 443 ssl;" in site.read_text() and "$proxy_add_x_forwarded_for" in site.read_text()

    missing = {name: value for name, value in environment.items() if name != "ATELIER_TLS_KEY"}
    refused = subprocess.run(["sh", str(entrypoint), "true"], env=missing, capture_output=True, text=True)
    assert refused.returncode == 1 and "ATELIER_TLS_KEY" in refused.stderr


def test_every_variable_it_reads_is_in_env_example() -> None:
    compose = (ROOT / "docker-compose.yml").read_text()
    used = set(re.findall(r"\$\{([A-Z0-9_]+)", compose))
    example = (ROOT / ".env.example").read_text()
    offered = set(re.findall(r"^#? ?([A-Z0-9_]+)=", example, flags=re.MULTILINE))
    assert used - offered == set()
    assert "${DJANGO_SECRET_KEY:?" in compose  # no stack with a missing secret
    assert re.search(r"^COMPOSE_PROFILES=cpu$", example, flags=re.MULTILINE)

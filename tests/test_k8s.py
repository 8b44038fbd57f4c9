"""The Kubernetes manifests (scripts/k8s_manifests.py with deploy/k8s/values.yaml), checked offline:
every manifest against the Kubernetes JSON schemas (kubernetes-validate, strict: no unknown
field), KEDA's objects field by field (no KEDA schema offline), and the wiring an operator relies
on: probes, secrets, the proxy's shipped configuration, GPU workers that drain on SIGTERM, and
queue names that are the ones RQ really writes."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from django.conf import settings

from generations.queue_names import queue_name
from generations.queues import rq_queue
from scripts import k8s_manifests, k8s_workers
from scripts.nginx_proxy import PLACEHOLDER
from tests.conftest import ROOT

# The oldest Kubernetes the manifests are meant for (docs/deploy.md).
KUBERNETES_VERSION = "1.30.0"
APP_IMAGE_COMPONENTS = {"web", "ws", "dispatcher", "migrate", "worker-sd15", "worker-sdxl"}


@pytest.fixture(scope="module")
def values() -> dict[str, Any]:
    return k8s_manifests.load_values(k8s_manifests.DEFAULT_VALUES)


@pytest.fixture(scope="module")
def manifests(values: dict[str, Any]) -> list[dict[str, Any]]:
    # Through the YAML the operator applies, not the dicts: what kubectl reads is what is checked.
    return list(yaml.safe_load_all(k8s_manifests.dump(k8s_manifests.render(values))))


def find(manifests: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = [m for m in manifests if m["kind"] == kind and m["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} found"
    return found[0]


def pod_spec(manifest: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = manifest["spec"]["template"]["spec"]
    return spec


def test_every_manifest_matches_the_kubernetes_schemas(manifests: list[dict[str, Any]]) -> None:
    checked = 0
    for manifest in manifests:
        if manifest["apiVersion"].startswith("keda.sh/"):
            continue  # checked field by field below
        kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)
        checked += 1
    assert checked >= 20


def test_the_validator_refuses_a_broken_manifest(manifests: list[dict[str, Any]]) -> None:
    broken = copy.deepcopy(find(manifests, "Deployment", "atelier-web"))
    pod_spec(broken)["containers"][0]["readinesProbe"] = pod_spec(broken)["containers"][0].pop(
        "readinessProbe"
    )
    with pytest.raises(kubernetes_validate.ValidationError, match="readinesProbe"):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


def test_the_cli_writes_what_render_returns(
    values: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    assert k8s_manifests.main(["--values", str(k8s_manifests.DEFAULT_VALUES)]) == 0
    assert capsys.readouterr().out == k8s_manifests.dump(k8s_manifests.render(values))


def test_it_runs_every_process_of_the_design(manifests: list[dict[str, Any]]) -> None:
    deployments = {m["metadata"]["name"] for m in manifests if m["kind"] == "Deployment"}
    assert deployments == {
        "atelier-web",
        "atelier-ws",
        "atelier-dispatcher",
        "atelier-proxy",
        "atelier-worker-sd15",
        "atelier-worker-sdxl",
    }
    commands = {
        m["metadata"]["name"]: pod_spec(m)["containers"][0].get("command")
        for m in manifests
        if m["kind"] == "Deployment"
    }
    assert commands["atelier-web"] == ["gunicorn", "-c", "config/gunicorn.py"]
    assert commands["atelier-ws"][0] == "daphne" and commands["atelier-ws"][-1] == "config.asgi:application"
    assert commands["atelier-dispatcher"] == ["python", "manage.py", "dispatcher"]
    migrate = find(manifests, "Job", "atelier-migrate-2026-12-0")
    assert pod_spec(migrate)["containers"][0]["command"] == ["python", "manage.py", "migrate", "--no-input"]
    assert pod_spec(migrate)["restartPolicy"] == "Never"


def test_the_dispatcher_is_one_pod_replaced_not_rolled(manifests: list[dict[str, Any]]) -> None:
    dispatcher = find(manifests, "Deployment", "atelier-dispatcher")
    assert dispatcher["spec"]["replicas"] == 1
    assert dispatcher["spec"]["strategy"] == {"type": "Recreate"}


def test_services_route_to_the_pods_they_name(manifests: list[dict[str, Any]]) -> None:
    deployments = [m for m in manifests if m["kind"] == "Deployment"]
    for service in (m for m in manifests if m["kind"] == "Service"):
        selector = service["spec"]["selector"]
        [target] = [
            d for d in deployments if selector.items() <= d["spec"]["template"]["metadata"]["labels"].items()
        ]
        ports = {p["containerPort"] for c in pod_spec(target)["containers"] for p in c.get("ports", [])}
        assert {p["targetPort"] for p in service["spec"]["ports"]} <= ports, service["metadata"]["name"]


def test_the_ingress_sends_websockets_to_daphne_and_the_rest_to_the_proxy(
    manifests: list[dict[str, Any]], values: dict[str, Any]
) -> None:
    ingress = find(manifests, "Ingress", "atelier")
    [rule] = ingress["spec"]["rules"]
    routes = {p["path"]: p["backend"]["service"] for p in rule["http"]["paths"]}
    for socket in ("/ws/", "/ws", "/api/ws"):
        assert routes[socket] == {"name": "atelier-ws", "port": {"number": 8001}}
    assert {p["path"]: p["pathType"] for p in rule["http"]["paths"]}["/ws/"] == "Prefix"
    assert routes["/"] == {"name": "atelier-proxy", "port": {"number": 8443}}
    assert rule["host"] == values["host"]
    assert ingress["spec"]["tls"] == [{"hosts": [values["host"]], "secretName": values["tls_secret"]}]
    # HTTPS to the proxy, so the app sees https and does not redirect in a loop.
    assert ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/backend-protocol"] == "HTTPS"


def test_the_proxy_runs_the_shipped_nginx_configuration(manifests: list[dict[str, Any]]) -> None:
    conf = find(manifests, "ConfigMap", "atelier-proxy")
    shipped = (ROOT / "deploy" / "nginx" / "atelier.conf").read_text()
    assert conf["data"]["atelier.conf"] == shipped
    proxy = find(manifests, "Deployment", "atelier-proxy")
    [nginx] = pod_spec(proxy)["containers"]
    env = {item["name"]: item["value"] for item in nginx["env"]}
    assert set(PLACEHOLDER.findall(shipped)) <= set(env)  # the entrypoint can fill every value
    assert env["ATELIER_WEB_SERVERS"] == "server atelier-web:8000;"
    assert env["ATELIER_WS_SERVERS"] == "server atelier-ws:8001;"
    mounts = {m["name"]: m["mountPath"] for m in nginx["volumeMounts"]}
    assert mounts["conf"] == "/etc/nginx/templates"  # where deploy/nginx/entrypoint.sh reads it
    assert "/etc/nginx/templates/atelier.conf" in (ROOT / "deploy" / "nginx" / "entrypoint.sh").read_text()
    [collect] = pod_spec(proxy)["initContainers"]
    assert collect["command"][:3] == ["python", "manage.py", "collectstatic"]
    assert collect["volumeMounts"] == [{"name": "static", "mountPath": env["ATELIER_STATIC_ROOT"]}]


def test_gunicorn_has_the_manifest_of_hashed_static_names(manifests: list[dict[str, Any]]) -> None:
    plain = find(manifests, "ConfigMap", "atelier-env")["data"]
    assert plain["ATELIER_HASHED_STATIC"] == "1"  # pages link app.<hash>.css: they need staticfiles.json
    pod = pod_spec(find(manifests, "Deployment", "atelier-web"))
    [collect] = pod["initContainers"]
    assert collect["command"][:3] == ["python", "manage.py", "collectstatic"]
    assert collect["volumeMounts"] == [{"name": "static", "mountPath": plain["STATIC_ROOT"]}]
    [main] = pod["containers"]
    assert {"name": "static", "mountPath": plain["STATIC_ROOT"], "readOnly": True} in main["volumeMounts"]


def test_web_and_ws_probe_readyz_and_healthz_as_the_proxy_asks(
    manifests: list[dict[str, Any]], values: dict[str, Any]
) -> None:
    for name, port in (("atelier-web", 8000), ("atelier-ws", 8001)):
        [main] = pod_spec(find(manifests, "Deployment", name))["containers"]
        for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
            request = main[probe]["httpGet"]
            assert (request["path"], request["port"]) == (path, port), name
            headers = {h["name"]: h["value"] for h in request["httpHeaders"]}
            # Without them DJANGO_DEBUG=0 answers 400 (host) or 301 (https), and a 301 passes a probe.
            assert headers == {"Host": values["host"], "X-Forwarded-Proto": "https"}
        assert values["host"] in values["env"]["DJANGO_ALLOWED_HOSTS"].split(",")


def test_secrets_come_from_the_secret_and_nowhere_else(
    manifests: list[dict[str, Any]], values: dict[str, Any]
) -> None:
    app = [
        m
        for m in manifests
        if m["kind"] in ("Deployment", "Job") and m["metadata"]["name"] != "atelier-proxy"
    ]
    containers = [c for m in app for c in pod_spec(m)["containers"]]
    containers += pod_spec(find(manifests, "Deployment", "atelier-proxy"))["initContainers"]
    containers += pod_spec(find(manifests, "Deployment", "atelier-web"))["initContainers"]
    assert len(containers) == 8
    for main in containers:
        assert {"secretRef": {"name": values["secret"]}} in main["envFrom"], main["name"]
        assert {"configMapRef": {"name": "atelier-env"}} in main["envFrom"], main["name"]
    plain = find(manifests, "ConfigMap", "atelier-env")["data"]
    secret_like = re.compile(r"SECRET|PASSWORD|TOKEN|DATABASE_URL|REDIS_URL|ACCESS_KEY")
    assert not [key for key in plain if secret_like.search(key)]
    assert plain["DJANGO_DEBUG"] == "0"


def test_gpu_workers_land_on_their_nodes_and_drain_on_sigterm(
    manifests: list[dict[str, Any]], values: dict[str, Any]
) -> None:
    timeouts = dict(
        pair.split("=")
        for pair in find(manifests, "ConfigMap", "atelier-env")["data"]["ATELIER_POOL_TIMEOUTS"].split(",")
    )
    for pool in values["pools"]:
        worker = find(manifests, "Deployment", f"atelier-worker-{pool['name']}")
        pod = pod_spec(worker)
        [main] = pod["containers"]
        assert main["command"] == [
            "python",
            "manage.py",
            "gpu_worker",
            "--pools",
            pool["name"],
            "--device",
            "cuda:0",
        ]
        assert (
            main["resources"]["requests"]["nvidia.com/gpu"]
            == main["resources"]["limits"]["nvidia.com/gpu"]
            == 1
        )
        assert pod["nodeSelector"] == pool["node_selector"]
        assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
        # RQ stops a job at the pool's timeout; Kubernetes kills the pod only after that.
        assert pod["terminationGracePeriodSeconds"] >= int(timeouts[pool["name"]]) == pool["job_timeout"]
        assert "replicas" not in worker["spec"]  # KEDA owns the count
    assert (
        find(manifests, "Deployment", "atelier-worker-sdxl")["spec"]["template"]["spec"][
            "terminationGracePeriodSeconds"
        ]
        >= 1800
    )


def test_the_rendered_timeouts_are_the_ones_the_settings_read(
    manifests: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    from core.env import env_pairs

    rendered = find(manifests, "ConfigMap", "atelier-env")["data"]["ATELIER_POOL_TIMEOUTS"]
    monkeypatch.setenv("ATELIER_POOL_TIMEOUTS", rendered)
    assert env_pairs("ATELIER_POOL_TIMEOUTS", "") == {"sd15": 900.0, "sdxl": 1800.0}


def test_web_scales_on_cpu_and_evictions_keep_a_pod(manifests: list[dict[str, Any]]) -> None:
    hpa = find(manifests, "HorizontalPodAutoscaler", "atelier-web")
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "atelier-web",
    }
    assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
    assert "replicas" not in find(manifests, "Deployment", "atelier-web")["spec"]
    budgets = {m["metadata"]["name"]: m["spec"] for m in manifests if m["kind"] == "PodDisruptionBudget"}
    for name in ("atelier-web", "atelier-ws", "atelier-proxy"):
        assert budgets[name]["minAvailable"] == 1
    # Workers may scale to zero: a minimum would block every drain, so one goes at a time instead.
    assert budgets["atelier-worker-sdxl"]["maxUnavailable"] == 1


def test_keda_scales_each_pool_on_the_sum_of_its_lanes(
    manifests: list[dict[str, Any]], values: dict[str, Any]
) -> None:
    deployments = {m["metadata"]["name"] for m in manifests if m["kind"] == "Deployment"}
    auths = {m["metadata"]["name"]: m for m in manifests if m["kind"] == "TriggerAuthentication"}
    for pool in values["pools"]:
        scaled = find(manifests, "ScaledObject", f"atelier-worker-{pool['name']}")
        assert scaled["apiVersion"] == "keda.sh/v1alpha1"
        spec = scaled["spec"]
        assert spec["scaleTargetRef"]["name"] in deployments
        assert isinstance(spec["minReplicaCount"], int) and isinstance(spec["maxReplicaCount"], int)
        assert 0 <= spec["minReplicaCount"] <= spec["maxReplicaCount"]
        assert spec["pollingInterval"] == 15 and spec["cooldownPeriod"] == 300
        lists = {t["name"]: t["metadata"]["listName"] for t in spec["triggers"]}
        assert lists == {lane: f"rq:queue:{queue_name(pool['name'], lane)}" for lane in settings.LANES}
        for trigger in spec["triggers"]:
            assert trigger["type"] == "redis"
            meta = trigger["metadata"]
            assert all(isinstance(v, str) for v in meta.values())  # KEDA reads metadata as strings
            assert meta["listLength"] == str(pool["jobs_per_worker"]) and meta["activationListLength"] == "0"
            assert re.fullmatch(r"[\w.-]+:\d+", meta["address"])
            auth = auths[trigger["authenticationRef"]["name"]]
            assert auth["spec"]["secretTargetRef"] == [
                {"parameter": "password", "name": values["secret"], "key": "REDIS_PASSWORD"}
            ]
        modifiers = spec["advanced"]["scalingModifiers"]
        assert set(re.findall(r"\w+", modifiers["formula"])) == set(lists)
        assert "+" in modifiers["formula"] and modifiers["target"] == str(pool["jobs_per_worker"])
    # The hot standby on the main pool; the large one is optional and sleeps at zero.
    assert find(manifests, "ScaledObject", "atelier-worker-sd15")["spec"]["minReplicaCount"] == 1
    assert find(manifests, "ScaledObject", "atelier-worker-sdxl")["spec"]["minReplicaCount"] == 0


def test_the_lists_keda_watches_are_where_rq_puts_the_jobs(values: dict[str, Any]) -> None:
    import redis

    connection = redis.Redis.from_url(settings.REDIS_URL)
    lists = k8s_workers.queue_lists("sd15")
    connection.delete(*lists.values())
    rq_queue(queue_name("sd15", "standard")).enqueue("builtins.print", "queued")
    assert connection.llen(lists["standard"]) == 1
    assert connection.llen(lists["priority"]) == 0
    connection.delete(*lists.values())


def test_prometheus_can_be_the_source_instead(values: dict[str, Any]) -> None:
    manifests = k8s_manifests.render({**values, "queue_depth_source": "prometheus"})
    scaled = find(manifests, "ScaledObject", "atelier-worker-sd15")
    [trigger] = scaled["spec"]["triggers"]
    assert trigger["type"] == "prometheus"
    assert trigger["metadata"]["query"] == 'sum(atelier_queue_depth{pool="sd15"})'
    assert trigger["metadata"]["threshold"] == "10"
    assert "atelier_queue_depth" in (ROOT / "ops" / "metrics.py").read_text()
    assert not [m for m in manifests if m["kind"] == "TriggerAuthentication"]


def test_a_pool_without_a_model_is_refused(values: dict[str, Any], tmp_path: Path) -> None:
    broken = copy.deepcopy(values)
    broken["pools"].append({**broken["pools"][0], "name": "flux"})
    path = tmp_path / "values.yaml"
    path.write_text(yaml.safe_dump(broken))
    with pytest.raises(ValueError, match=r"flux.*no model"):
        k8s_manifests.load_values(path)
    # Unless its models are added at run time (manage.py models add): then it renders.
    broken["pools"][-1]["added_models"] = True
    path.write_text(yaml.safe_dump(broken))
    rendered = k8s_manifests.render(k8s_manifests.load_values(path))
    assert find(rendered, "Deployment", "atelier-worker-flux")


def test_the_manifests_lanes_are_the_apps_lanes() -> None:
    assert k8s_workers.LANES == settings.LANES


def test_workers_and_the_dispatcher_are_restarted_when_their_heartbeat_goes_stale(
    manifests: list[dict[str, Any]], values: dict[str, Any]
) -> None:
    expected = {
        f"atelier-worker-{pool['name']}": ["--worker", "--pools", pool["name"]] for pool in values["pools"]
    }
    expected["atelier-dispatcher"] = ["--dispatcher"]
    for name, args in expected.items():
        [main] = pod_spec(find(manifests, "Deployment", name))["containers"]
        for probe in ("livenessProbe", "startupProbe"):
            # tests/test_alive.py runs this command against real workers and dispatchers.
            assert main[probe]["exec"]["command"] == ["python", "manage.py", "alive", *args]
        assert main["livenessProbe"]["failureThreshold"] * main["livenessProbe"]["periodSeconds"] >= 60
    [worker] = pod_spec(find(manifests, "Deployment", "atelier-worker-sd15"))["containers"]
    startup = worker["startupProbe"]
    assert (
        startup["periodSeconds"] * startup["failureThreshold"] >= k8s_workers.STARTUP_SECONDS
    )  # models load

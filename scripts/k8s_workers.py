"""The GPU workers on Kubernetes: one Deployment per pool, scaled by KEDA on the pool's queue depth.

Each pool's worker pods run `gpu_worker --pools <pool>` on the nodes its node selector and
tolerations name, with the GPUs it asks for. KEDA sets the replica count from the jobs waiting in
the pool's RQ lists (or from `atelier_queue_depth`): one worker per `jobs_per_worker` queued jobs,
never fewer than `min_replicas` (the hot standby; 0 lets an optional pool sleep) nor more than
`max_replicas`. A pod told to stop gets SIGTERM, finishes its running job and takes no new one,
so its grace period is the pool's job timeout and a margin for writing the images.
"""

from __future__ import annotations

from typing import Any

from scripts.k8s_objects import container, deployment, heartbeat_probes, metadata, pdb

# config/settings.py's LANES (a test checks they agree): each pool's queues, gen.<pool>.<lane>.
LANES = ("priority", "standard", "free", "relax")
RQ_LIST_PREFIX = "rq:queue:"
# Seconds a new worker has for its first heartbeat (it loads the pool's models first), unless
# its pool says `startup_seconds`.
STARTUP_SECONDS = 600
# Seconds past the job timeout a stopping worker keeps: the finisher writes the last images.
STOP_MARGIN_SECONDS = 60
REDIS_AUTH = "atelier-redis"


def queue_lists(pool: str) -> dict[str, str]:
    """The Redis list of each lane's waiting jobs (RQ's key for queue gen.<pool>.<lane>)."""
    return {lane: f"{RQ_LIST_PREFIX}gen.{pool}.{lane}" for lane in LANES}


def pool_timeouts(values: dict[str, Any]) -> str:
    """ATELIER_POOL_TIMEOUTS for every process, from the same numbers as the grace periods."""
    return ",".join(f"{pool['name']}={int(pool['job_timeout'])}" for pool in values["pools"])


def grace_seconds(pool: dict[str, Any]) -> int:
    return int(pool["job_timeout"]) + STOP_MARGIN_SECONDS


def worker_name(pool: dict[str, Any]) -> str:
    return f"atelier-worker-{pool['name']}"


def worker_deployment(pool: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    gpus = int(pool.get("gpus", 0))
    resources = {key: dict(value) for key, value in pool.get("resources", {}).items()}
    if gpus:
        # An extended resource: requests and limits must be equal.
        for kind in ("requests", "limits"):
            resources.setdefault(kind, {})["nvidia.com/gpu"] = gpus
    device = "cuda:0" if gpus else "cpu"
    main = container(
        "worker",
        values,
        ["python", "manage.py", "gpu_worker", "--pools", pool["name"], "--device", device],
        resources=resources,
    )
    main["volumeMounts"] = [{"name": "models", "mountPath": "/data/models", "readOnly": True}]
    alive = ["--worker", "--pools", pool["name"]]
    main.update(heartbeat_probes(alive, startup_seconds=int(pool.get("startup_seconds", STARTUP_SECONDS))))
    pod: dict[str, Any] = {
        "terminationGracePeriodSeconds": grace_seconds(pool),
        "volumes": [
            {
                "name": "models",
                "persistentVolumeClaim": {"claimName": values["models_claim"], "readOnly": True},
            }
        ],
    }
    if pool.get("node_selector"):
        pod["nodeSelector"] = dict(pool["node_selector"])
    if pool.get("tolerations"):
        pod["tolerations"] = list(pool["tolerations"])
    manifest = deployment(worker_name(pool), f"worker-{pool['name']}", values, [main], replicas=None, pod=pod)
    # A new worker starts before an old one stops, so a rollout never leaves the pool empty.
    manifest["spec"]["strategy"] = {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
    }
    return manifest


def redis_triggers(pool: dict[str, Any], values: dict[str, Any]) -> list[dict[str, Any]]:
    redis = values["redis"]
    triggers = []
    for lane, key in queue_lists(pool["name"]).items():
        trigger: dict[str, Any] = {
            "type": "redis",
            "name": lane,
            "metadata": {
                "address": redis["address"],
                "databaseIndex": str(redis.get("database", 0)),
                "listName": key,
                "listLength": str(pool["jobs_per_worker"]),
                "activationListLength": "0",
            },
        }
        if redis.get("password_key"):
            trigger["authenticationRef"] = {"name": REDIS_AUTH}
        triggers.append(trigger)
    return triggers


def prometheus_trigger(pool: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "prometheus",
        "name": "queued",
        "metadata": {
            "serverAddress": values["prometheus"]["address"],
            "query": f'sum(atelier_queue_depth{{pool="{pool["name"]}"}})',
            "threshold": str(pool["jobs_per_worker"]),
            "activationThreshold": "0",
        },
    }


def scaled_object(pool: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    keda = values["keda"]
    target = str(pool["jobs_per_worker"])
    advanced: dict[str, Any] = {
        "horizontalPodAutoscalerConfig": {
            # One worker at a time, after five quiet minutes: a stopping worker drains its job.
            "behavior": {
                "scaleDown": {
                    "stabilizationWindowSeconds": 300,
                    "policies": [{"type": "Pods", "value": 1, "periodSeconds": 60}],
                }
            }
        }
    }
    if values.get("queue_depth_source", "redis") == "prometheus":
        triggers = [prometheus_trigger(pool, values)]
    else:
        triggers = redis_triggers(pool, values)
        # Several triggers would scale on the longest lane; the pool's work is their sum.
        advanced["scalingModifiers"] = {
            "formula": " + ".join(LANES),
            "target": target,
            "activationTarget": "0",
            "metricType": "AverageValue",
        }
    return {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": metadata(worker_name(pool), values, f"worker-{pool['name']}"),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": worker_name(pool)},
            "pollingInterval": int(keda["polling_interval"]),
            "cooldownPeriod": int(keda["cooldown_period"]),
            "minReplicaCount": int(pool["min_replicas"]),
            "maxReplicaCount": int(pool["max_replicas"]),
            "advanced": advanced,
            "triggers": triggers,
        },
    }


def redis_authentication(values: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "TriggerAuthentication",
        "metadata": metadata(REDIS_AUTH, values, "autoscaling"),
        "spec": {
            "secretTargetRef": [
                {"parameter": "password", "name": values["secret"], "key": values["redis"]["password_key"]}
            ]
        },
    }


def worker_manifests(values: dict[str, Any]) -> list[dict[str, Any]]:
    manifests = []
    if values.get("queue_depth_source", "redis") == "redis" and values["redis"].get("password_key"):
        manifests.append(redis_authentication(values))
    for pool in values["pools"]:
        if int(pool["min_replicas"]) > int(pool["max_replicas"]):
            raise ValueError(f"pool {pool['name']}: min_replicas is above max_replicas")
        manifests.append(worker_deployment(pool, values))
        manifests.append(scaled_object(pool, values))
        manifests.append(pdb(worker_name(pool), f"worker-{pool['name']}", values, max_unavailable=1))
    return manifests

"""Atelier settings: every value comes from an environment variable with a working local default."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import dj_database_url
import django_stubs_ext

from api.middleware import API_MIDDLEWARE
from config.account_settings import *  # noqa: F403 (allauth and mail, kept apart for length)
from config.account_settings import ACCOUNT_APPS, cache_in_redis
from config.api_settings import *  # noqa: F403 (the OpenAPI description)
from config.leaving_settings import *  # noqa: F403 (closing accounts, data exports)
from config.liveness_settings import *  # noqa: F403 (the dispatcher's heartbeat)
from config.load_settings import *  # noqa: F403 (degrading under load)
from config.lora_settings import *  # noqa: F403 (the shipped LoRAs)
from config.oauth_settings import oauth_provider
from config.resilience_settings import *  # noqa: F403 (result cache and circuit breakers)
from config.storage_settings import *  # noqa: F403 (storage tiers, deletion, thumbnails)
from core.env import (
    env_bool,
    env_float,
    env_int,
    env_list,
    env_pairs,
    env_secret,
    env_str,
    installation_secret,
)
from core.model_catalog import parse_models
from generations.queue_names import queue_name

django_stubs_ext.monkeypatch()

BASE_DIR = Path(__file__).resolve().parent.parent

DATA_DIR = Path(env_str("ATELIER_DATA_DIR", str(BASE_DIR / "var")))
DATA_DIR.mkdir(parents=True, exist_ok=True)  # the SQLite file and the built-in model live here
DEBUG = env_bool("DJANGO_DEBUG", True)
# Signs sessions and image URLs. A laptop without one gets its own, made once and kept in the data
# folder (as the admin password is); production must set it, and every web process the same.
SECRET_KEY = env_secret("DJANGO_SECRET_KEY", "")
if not SECRET_KEY and DEBUG:
    SECRET_KEY = installation_secret(DATA_DIR / "secret-key.txt")
if not SECRET_KEY:
    raise ValueError("DJANGO_SECRET_KEY must be set when DJANGO_DEBUG is off")
OAUTH2_PROVIDER = oauth_provider(DATA_DIR, DEBUG)  # third-party apps (config/oauth_settings.py)
ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]" if DEBUG else "")
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS", "")

INSTALLED_APPS = [
    # daphne's app only gives runserver its ASGI server; GPU worker machines need not install it.
    *(["daphne"] if importlib.util.find_spec("daphne") else []),
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_rq",
    "channels",
    *ACCOUNT_APPS,  # allauth and the OAuth provider (config/account_settings.py)
    "accounts",
    "billing",
    "generations",
    "gallery",
    "gpu_worker",
    "webhooks",
    "ops",
    "api",
    "demo_model",
]

MIDDLEWARE = [
    "ops.load_shedding.LoadSheddingMiddleware",  # first: a request over the limit costs nothing more
    "ops.requests.RequestLogMiddleware",
    "core.memo.RequestMemoMiddleware",  # pool state read once per request
    "ops.load_shedding.DependencyTimeoutMiddleware",  # a slow database or Redis: 503, logged as such
    "ops.body_limit.RequestSizeLimitMiddleware",  # before anything reads the body
    "ops.request_text.NulCharacterMiddleware",  # before any view could query with one
    "django.middleware.security.SecurityMiddleware",
    "ops.security.ContentSecurityPolicyMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    *API_MIDDLEWARE,  # the API edge, in the order api/middleware.py explains
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "allauth.account.middleware.AccountMiddleware",
    "accounts.staff_mfa.StaffTwoFactorMiddleware",
]
ROOT_URLCONF = "config.urls"
ASGI_APPLICATION = "config.asgi.application"  # daphne: WebSockets (and all of `make run`)
WSGI_APPLICATION = "config.wsgi.application"  # gunicorn: HTTP in production (config/gunicorn.py)

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

_database_url = env_str("DATABASE_URL", f"sqlite:///{DATA_DIR / 'atelier.sqlite3'}")
# SQLite keeps its connections (one per thread; daphne's threads are a reused pool, core/asgi_http.py).
_sqlite = _database_url.startswith("sqlite")
DATABASES = {
    "default": dj_database_url.parse(
        _database_url, conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 600 if _sqlite else 0)
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Web, worker and dispatcher share the file: WAL lets readers run beside one writer, and
    # IMMEDIATE transactions make writers queue on the lock instead of failing mid-transaction.
    DATABASES["default"]["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        "timeout": 30,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    DATABASES["default"]["TEST"] = {"NAME": str(DATA_DIR / "test.sqlite3")}

if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql" and env_bool("DATABASE_PREPARE", True):
    # Parameters bound by the server, and statements that a connection runs often prepared
    # once: PostgreSQL then parses and plans them once per connection instead of per request.
    # Off (DATABASE_PREPARE=0) behind a transaction-pooling proxy such as PgBouncer.
    DATABASES["default"].setdefault("OPTIONS", {}).update(server_side_binding=True, prepare_threshold=5)
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql" and env_int("DATABASE_POOL_MAX", 0):
    # A connection pool per process, for daphne: under ASGI, persistent connections
    # (CONN_MAX_AGE) leak one per thread, while a pool hands each request a warm connection and
    # takes it back. gunicorn's fixed threads keep one persistent connection each instead.
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": 1,
        "max_size": env_int("DATABASE_POOL_MAX", 0),
    }
with_database_deadlines(DATABASES["default"])  # noqa: F405 (deadlines: config/load_settings.py)

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
AUTH_USER_MODEL = "accounts.User"
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "create"
LOGOUT_REDIRECT_URL = "login"
AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "allauth.account.auth_backends.AuthenticationBackend",  # sign-in by email address too
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(env_str("STATIC_ROOT", str(BASE_DIR / "staticfiles")))
STATICFILES_DIRS = [BASE_DIR / "static"]
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = DEBUG
MEDIA_ROOT = Path(env_str("MEDIA_ROOT", str(DATA_DIR / "media")))

# Media on any S3-compatible store (AWS, MinIO, R2, moto...) when a bucket is named; else the
# filesystem under MEDIA_ROOT. Credentials come from the usual AWS_* variables.
ATELIER_S3_BUCKET = env_str("ATELIER_S3_BUCKET", "")
ATELIER_SIGNED_URL_SECONDS = env_int("ATELIER_SIGNED_URL_SECONDS", 300)


def s3_storage(bucket: str) -> dict[str, object]:
    return {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": bucket,
            "endpoint_url": env_str("AWS_S3_ENDPOINT_URL", "") or None,
            "region_name": env_str("AWS_S3_REGION_NAME", "") or None,
            "addressing_style": "path",
            "default_acl": "private",
            "querystring_auth": True,  # url() is a presigned URL
            "querystring_expire": ATELIER_SIGNED_URL_SECONDS,
            "file_overwrite": True,  # names are content hashes: the same name is the same bytes
            "object_parameters": {"CacheControl": "private, max-age=3600"},
        },
    }


STORAGES = {
    "default": s3_storage(ATELIER_S3_BUCKET)
    if ATELIER_S3_BUCKET
    else {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    # Hashed names (app.3f9a1c2b4d5e.css) once `collectstatic` has run: the reverse proxy can then
    # let browsers keep them for a year (deploy/nginx/atelier.conf). Off by default: without a
    # collected manifest, pages could not name their files.
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.ManifestStaticFilesStorage"
        if env_bool("ATELIER_HASHED_STATIC", False)
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}

# Redis: the machine's when REDIS_URL is set, else the private one that `make run` starts.
REDIS_URL = env_str("REDIS_URL", "redis://127.0.0.1:6380/0")

CACHES = {"default": cache_in_redis(REDIS_URL)}  # allauth's counters and spent codes
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": env_str("ATELIER_CHANNEL_LAYER", "channels_redis.core.RedisChannelLayer"),
        "CONFIG": {"hosts": [env_str("CHANNEL_REDIS_URL", REDIS_URL)], "prefix": "atelier:ch"},
    }
}

ATELIER_MODELS = parse_models(env_str("ATELIER_MODELS", ""), DATA_DIR)
ATELIER_DEFAULT_MODEL = env_str("ATELIER_DEFAULT_MODEL", next(iter(ATELIER_MODELS)))
if ATELIER_DEFAULT_MODEL not in ATELIER_MODELS:
    raise ValueError(f"ATELIER_DEFAULT_MODEL {ATELIER_DEFAULT_MODEL!r} is not in ATELIER_MODELS")
# Billing: disabled (everyone on the default plan) unless Stripe keys are set.
STRIPE_SECRET_KEY = env_secret("STRIPE_SECRET_KEY", "")
STRIPE_WEBHOOK_SECRET = env_secret("STRIPE_WEBHOOK_SECRET", "")
STRIPE_API_BASE = env_str("STRIPE_API_BASE", "")
STRIPE_WEBHOOK_TOLERANCE = env_int("STRIPE_WEBHOOK_TOLERANCE", 300)
BILLING_ENABLED = bool(STRIPE_SECRET_KEY and STRIPE_WEBHOOK_SECRET)
# The monthly grant of accounts without a subscription waits for a verified email address, so
# that throwaway sign-ups get nothing (on by default where billing is).
ATELIER_CREDITS_NEED_VERIFIED_EMAIL = env_bool("ATELIER_CREDITS_NEED_VERIFIED_EMAIL", BILLING_ENABLED)
ATELIER_DEFAULT_PLAN = env_str("ATELIER_DEFAULT_PLAN", "free" if BILLING_ENABLED else "pro")
# Number of reverse proxies in front of the web tier whose X-Forwarded-For entries are trusted.
ATELIER_TRUSTED_PROXIES = env_int("ATELIER_TRUSTED_PROXIES", 0)
ATELIER_ANON_RATE_PER_MINUTE = env_int("ATELIER_ANON_RATE_PER_MINUTE", 60)
# Reads of one's own ComfyUI state (GET /history, /queue, /view, /object_info ...) per user and
# minute, counted apart from the plan's rate: ComfyUI clients poll (api/ratelimit.py).
ATELIER_COMFY_READ_RATE_PER_MINUTE = env_int("ATELIER_COMFY_READ_RATE_PER_MINUTE", 1200)

LANES = ("priority", "standard", "free", "relax")

# Seconds a job may run, per pool (RQ stops it and it fails with `timeout`).
ATELIER_POOL_TIMEOUTS = env_pairs("ATELIER_POOL_TIMEOUTS", "")
ATELIER_JOB_TIMEOUT = env_int("ATELIER_JOB_TIMEOUT", 900)
RQ_QUEUES = {
    queue_name(pool, lane): {
        "URL": REDIS_URL,
        "DEFAULT_TIMEOUT": int(ATELIER_POOL_TIMEOUTS.get(pool, ATELIER_JOB_TIMEOUT)),
    }
    for pool in sorted({m.pool for m in ATELIER_MODELS.values()})
    for lane in LANES
}
# Seconds a queued job waits in a lane before it moves one lane up.
ATELIER_LANE_AGE_LIMITS = env_pairs("ATELIER_LANE_AGE_LIMITS", "standard=600,free=300,relax=3600")
# Relax jobs are released into RQ by the dispatcher, a few at a time per pool.
ATELIER_RELAX_QUEUE_DEPTH = env_int("ATELIER_RELAX_QUEUE_DEPTH", 2)
# Transient failures are retried after base * 2**attempt seconds.
ATELIER_RETRY_BASE_SECONDS = env_float("ATELIER_RETRY_BASE_SECONDS", 5)
# A worker whose heartbeat is older than this is considered lost; its job is re-queued.
ATELIER_HEARTBEAT_TTL = env_int("ATELIER_HEARTBEAT_TTL", 15)
ATELIER_MAX_ATTEMPTS = env_int("ATELIER_MAX_ATTEMPTS", 3)
ATELIER_DISPATCH_INTERVAL = env_float("ATELIER_DISPATCH_INTERVAL", 2)
# Seconds between progress events of one generation (the last step is always sent).
ATELIER_PROGRESS_INTERVAL = env_float("ATELIER_PROGRESS_INTERVAL", 0.2)
# Dynamic batching: how long a worker that took a job waits for compatible ones to join it (only
# while other jobs are queued: a lone job runs at once).
ATELIER_BATCH_WAIT = env_float("ATELIER_BATCH_WAIT", 0.02)
# Model affinity (gpu_worker/affinity.py): a queued job is left this long to an idle worker that
# holds its model before any worker takes it; 0 = plain queue order. A worker leaving jobs to others
# looks again every ATELIER_DEQUEUE_POLL seconds (idle ones wait for the enqueue's doorbell).
ATELIER_AFFINITY_WAIT = env_float("ATELIER_AFFINITY_WAIT", 2.0)
ATELIER_DEQUEUE_POLL = env_float("ATELIER_DEQUEUE_POLL", 0.02)
# torch.compile backend for models with "compile": true ("eager" only checks the plumbing).
ATELIER_COMPILE_BACKEND = env_str("ATELIER_COMPILE_BACKEND", "inductor")
# Memory a worker may use, in MiB (0 = no limit); see gpu_worker/memory.py.
ATELIER_WORKER_MEMORY_MB = env_int("ATELIER_WORKER_MEMORY_MB", 0)
# The worker's model cache (gpu_worker/cache.py): how many models stay hot on the device and warm in
# RAM (default: none warm on a CPU, 2 on a GPU), and byte budgets in MiB for each (0 = count only).
ATELIER_HOT_MODELS = env_int("ATELIER_HOT_MODELS", 2)
ATELIER_WARM_MODELS = env_int("ATELIER_WARM_MODELS", -1)
ATELIER_HOT_MB = env_int("ATELIER_HOT_MB", 0)
ATELIER_WARM_MB = env_int("ATELIER_WARM_MB", 0)

# Uploads for img2img: bytes, pixels and formats accepted.
ATELIER_UPLOAD_MAX_BYTES = env_int("ATELIER_UPLOAD_MAX_BYTES", 10 * 1024 * 1024)
ATELIER_UPLOAD_MAX_PIXELS = env_int("ATELIER_UPLOAD_MAX_PIXELS", 4096 * 4096)
ATELIER_UPLOAD_FORMATS = ("PNG", "JPEG", "WEBP")
ATELIER_PROMPT_MAX_CHARS = env_int("ATELIER_PROMPT_MAX_CHARS", 2000)
# A request body past this is refused before it is read (ops/body_limit.py): room for an image
# and a mask (/v1/images/edits) and the form fields around them.
ATELIER_REQUEST_MAX_BYTES = env_int("ATELIER_REQUEST_MAX_BYTES", 2 * ATELIER_UPLOAD_MAX_BYTES + 1024 * 1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = ATELIER_UPLOAD_MAX_BYTES + 1024 * 1024
FILE_UPLOAD_MAX_MEMORY_SIZE = DATA_UPLOAD_MAX_MEMORY_SIZE

# Workflows (node graphs through the ComfyUI API, workflows/): the most nodes a graph may have,
# the largest batch of one sampling node, how many recent uploads LoadImage lists, and the
# executor the worker hands a workflow job to (registered here: gpu_worker does not import it).
ATELIER_WORKFLOW_MAX_NODES = env_int("ATELIER_WORKFLOW_MAX_NODES", 500)
ATELIER_WORKFLOW_MAX_BATCH = env_int("ATELIER_WORKFLOW_MAX_BATCH", 4)
ATELIER_WORKFLOW_MAX_INPUTS = env_int("ATELIER_WORKFLOW_MAX_INPUTS", 500)
ATELIER_WORKFLOW_EXECUTOR = "workflows.executor.run_prompt"
# LoRA files (.safetensors, kohya or diffusers keys) offered as `lora_name` and as REST `loras`;
# the most a REST submission may stack, the weight range, and how many a worker keeps loaded.
ATELIER_LORA_DIR = Path(env_str("ATELIER_LORA_DIR", str(DATA_DIR / "loras")))
ATELIER_MAX_LORAS = env_int("ATELIER_MAX_LORAS", 4)
ATELIER_LORA_MAX_WEIGHT = env_float("ATELIER_LORA_MAX_WEIGHT", 4.0)
ATELIER_LORA_CACHE_ENTRIES = env_int("ATELIER_LORA_CACHE_ENTRIES", 8)
# What the worker loads and reports at start: the node plugins found and the ones skipped.
ATELIER_WORKFLOW_PLUGIN_REPORT = "workflows.registry.plugin_report"
ATELIER_WORKFLOW_CACHE_ENTRIES = env_int("ATELIER_WORKFLOW_CACHE_ENTRIES", 64)
# Binary preview frames on ComfyUI's socket for every prompt (off: only for prompts whose
# extra_data asks with "preview_method": "auto", as ComfyUI's default preview method is none).
ATELIER_WORKFLOW_PREVIEWS = env_bool("ATELIER_WORKFLOW_PREVIEWS", False)

# Checks every submission passes (moderation), and the style presets a prompt may name: what
# generations asks of the apps above it, registered here so it imports none of them
# (generations/extensions.py).
ATELIER_SUBMISSION_CHECKS = ["gallery.moderation.check_submission"]
ATELIER_STYLE_PRESETS = "gallery.selectors.active_styles"

# Webhook receivers on private or loopback addresses (and plain http): only when set, also in
# debug (a laptop on an office network has neighbours worth protecting).
ATELIER_WEBHOOK_ALLOW_PRIVATE = env_bool("ATELIER_WEBHOOK_ALLOW_PRIVATE", False)
# Seconds one delivery may take in all (connect, TLS, request, status and headers), and how many
# run at once beside the dispatcher's loop (webhooks/sender.py).
ATELIER_WEBHOOK_DEADLINE = env_float("ATELIER_WEBHOOK_DEADLINE", 10)
ATELIER_WEBHOOK_CONCURRENCY = env_int("ATELIER_WEBHOOK_CONCURRENCY", 8)
# Days a finished delivery (and its attempts) stays in the log; the dispatcher deletes older ones.
ATELIER_WEBHOOK_RETENTION_DAYS = env_int("ATELIER_WEBHOOK_RETENTION_DAYS", 30)

# The API's version, sent as `API-Version`; /api/v1/ stays compatible within it.
ATELIER_API_VERSION = "1.0"
# Deprecated routes by URL name: {"name": {"sunset": HTTP-date, "link": docs URL}} adds
# `Deprecation`, `Sunset` and `Link` headers to their responses (RFC 9745, RFC 8594).
ATELIER_DEPRECATED_ROUTES: dict[str, dict[str, str]] = {}

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "api.authentication.ApiKeyAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "EXCEPTION_HANDLER": "api.exceptions.api_exception_handler",
    "DEFAULT_PAGINATION_CLASS": "api.pagination.CursorPage",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "UNAUTHENTICATED_USER": None,
}


# One JSON object per line in production (LOG_FORMAT=json); plain text while developing.
LOG_FORMAT = env_str("LOG_FORMAT", "text" if DEBUG else "json")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "json": {"()": "ops.logs.JsonFormatter"},
        "text": {"format": "%(levelname)s %(name)s %(message)s"},
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    # Request lines are for the JSON log pipeline; in text mode they would repeat the server's own.
    "loggers": {"atelier.request": {"level": "INFO" if LOG_FORMAT == "json" else "WARNING"}},
}

# Staff reach the admin only with two factors set up (accounts/staff_mfa.py).
ATELIER_STAFF_MFA = env_bool("ATELIER_STAFF_MFA", not DEBUG)
# Seconds between an open event socket's checks that its key or user still grants access.
ATELIER_WS_RECHECK_SECONDS = env_float("ATELIER_WS_RECHECK_SECONDS", 10)
# Accounts one client address may make per hour (each comes with the default plan's credits).
ATELIER_SIGNUPS_PER_HOUR = env_int("ATELIER_SIGNUPS_PER_HOUR", 5)

# /metrics: a Bearer token, or else only these client addresses.
ATELIER_METRICS_TOKEN = env_str("ATELIER_METRICS_TOKEN", "")
ATELIER_METRICS_ALLOW = env_list("ATELIER_METRICS_ALLOW", "127.0.0.1,::1")

if not DEBUG:
    SECURE_SSL_REDIRECT = env_bool("DJANGO_SECURE_SSL_REDIRECT", True)
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = env_int("DJANGO_HSTS_SECONDS", 31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True

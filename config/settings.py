"""Settings, read from the environment with safe development defaults.

Production sets DEBUG=False, SECRET_KEY, ALLOWED_HOSTS and the URLs; `manage.py
check --deploy` is clean with those.
"""

import hashlib
import os
from pathlib import Path
from urllib.parse import urlsplit

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def env_str(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    if value.lower() in ("1", "true", "yes", "on"):
        return True
    if value.lower() in ("0", "false", "no", "off"):
        return False
    raise ImproperlyConfigured(f"{name} must be true or false, not {value!r}")


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be an integer, not {value!r}") from None


def env_float(name: str, default: float) -> float:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return float(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a number, not {value!r}") from None


DEBUG = env_bool("DEBUG", True)
SECRET_KEY = env_str("SECRET_KEY")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is off")
    SECRET_KEY = "dev-only-insecure-key-do-not-use-in-production-0123456789abcdef"

ALLOWED_HOSTS = [h.strip() for h in env_str("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]").split(",") if h.strip()]
CSRF_TRUSTED_ORIGINS = [o.strip() for o in env_str("CSRF_TRUSTED_ORIGINS").split(",") if o.strip()]

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "axes",
    "channels",
    # Lowest first: each app imports only the ones above it.
    "catalog",
    "accounts",
    "quotas",
    "chat",
    "api",
    "generation",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "config.middleware.content_security_policy",
    "axes.middleware.AxesMiddleware",
]

AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]

ROOT_URLCONF = "config.urls"
ASGI_APPLICATION = "config.asgi.application"

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
                "generation.context_processors.provider",
                "generation.context_processors.staff_alerts",
            ],
        },
    },
]

DATABASE_URL = env_str("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres")
DATABASES = {"default": dj_database_url.parse(DATABASE_URL)}
DATABASES["default"]["ENGINE"] = "config.postgresql"  # Django's, with a pool that recovers from a restart at once
DB_PREPARED_STATEMENTS = env_bool("DB_PREPARED_STATEMENTS", True)
# psycopg's pool: a generation borrows a connection only while it writes.
DATABASES["default"]["OPTIONS"] = {
    "pool": {
        "min_size": env_int("DB_POOL_MIN", 2),
        "max_size": env_int("DB_POOL_MAX", 20),
        "timeout": env_float("DB_POOL_TIMEOUT", 10.0),
    },
    "connect_timeout": 5,
    "application_name": env_str("DB_APPLICATION_NAME", "chat"),
    # Server-side binding lets psycopg prepare the statements a connection repeats (after 5 uses):
    # Postgres then skips planning, most of its time per reservation (docs/benchmarks.md, "Why the code is as it is").
    # Set DB_PREPARED_STATEMENTS=false behind PgBouncer in transaction mode older than 1.21.
    "server_side_binding": DB_PREPARED_STATEMENTS,
    "prepare_threshold": 5 if DB_PREPARED_STATEMENTS else None,
}
# After a PostgreSQL restart, dead pooled connections are replaced, not handed out.
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
DATABASES["default"]["TEST"] = {"NAME": env_str("TEST_DATABASE_NAME", "test_chat")}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env_str("REDIS_URL", "redis://127.0.0.1:6379/0")


def installation_name() -> str:
    """A name for this installation, from its database and Redis database number.

    Redis pub/sub ignores the database number, so two installations on one Redis
    would see each other's live events under a shared prefix; their Celery queues,
    limiter and alert keys would mix on a shared Redis database. Everything this
    installation names in Redis starts with this (or CHANNEL_PREFIX, when set).
    """
    db = DATABASES["default"]
    redis_db = urlsplit(REDIS_URL).path.strip("/") or "0"
    where = f"{db.get('HOST')}:{db.get('PORT')}/{db.get('NAME')}|redis db {redis_db}"
    return "chat-" + hashlib.sha256(where.encode()).hexdigest()[:10]


CHANNEL_PREFIX = env_str("CHANNEL_PREFIX") or installation_name()
CHANNEL_LAYERS = {
    "default": {
        # Pub/sub: one PUBLISH per group message, pushed to each web process; no per-message
        # polling. Live updates are best effort anyway (offsets + resync + resume buffer).
        "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
        "CONFIG": {"hosts": [REDIS_URL], "prefix": CHANNEL_PREFIX},
    }
}

CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", REDIS_URL)
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_DEFAULT_QUEUE = env_str("CELERY_QUEUE") or CHANNEL_PREFIX
# A generation can run for minutes; the broker must not redeliver it meanwhile.
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": env_int("CELERY_VISIBILITY_TIMEOUT", 3600)}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# With the broker down, a send gives up enqueueing within about a second and keeps the reply
# pending; the reaper enqueues it again once the broker is back (chat.actions._enqueue).
CELERY_TASK_PUBLISH_RETRY_POLICY = {"max_retries": 2, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.5}
# Remote control listens on a Redis pub/sub channel whose reconnection crashes
# the worker after a Redis restart (kombu); we do not use it.
CELERY_WORKER_ENABLE_REMOTE_CONTROL = False
# The reaper ends replies whose worker died (see generation/reply.py, reply_reap).
CELERY_BEAT_SCHEDULE = {"reply-reap": {"task": "generation.tasks.reply_reap", "schedule": 15.0}}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "accounts-login"
LOGIN_REDIRECT_URL = "chat-home"
LOGOUT_REDIRECT_URL = "accounts-login"

# --- Accounts (accounts/; docs/deploy.md, "Accounts") ---------------------------------
# Demo mode: the bundled simulator answers (no OPENAI_API_KEY) and DEBUG is on. Only then does
# `manage.py seed_demo` create its known-password accounts, and sign-up defaults to open.
DEMO_MODE = DEBUG and not env_str("OPENAI_API_KEY")
# Who may create an account until staff choose in the admin (Accounts → Sign-up policy):
# open, invite (single-use links made by staff) or closed.
SIGNUP_POLICY = env_str("SIGNUP_POLICY") or ("open" if DEMO_MODE else "invite")
if SIGNUP_POLICY not in ("open", "invite", "closed"):
    raise ImproperlyConfigured(f"SIGNUP_POLICY must be open, invite or closed, not {SIGNUP_POLICY!r}")
INVITE_DAYS = env_int("INVITE_DAYS", 7)  # how long a new invite link stays valid, unless staff change it

# Login throttling (accounts/throttle.py, with django-axes): failed log-ins are counted per
# username and, separately, per client address, over the last AXES_COOLOFF_TIME. A username is
# locked after AXES_FAILURE_LIMIT failures from anywhere (one account attacked from many
# addresses); an address after LOGIN_FAILURES_PER_ADDRESS failures on any usernames (password
# spraying), a higher number because a team may share one address.
AXES_FAILURE_LIMIT = env_int("AXES_FAILURE_LIMIT", 5)
LOGIN_FAILURES_PER_ADDRESS = env_int("LOGIN_FAILURES_PER_ADDRESS", 20)
AXES_COOLOFF_TIME = 0.25  # hours
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
AXES_HANDLER = "accounts.throttle.LoginThrottleHandler"
AXES_LOCKOUT_CALLABLE = "accounts.throttle.lockout_response"
# The client address is the peer's (REMOTE_ADDR), never a header: the web server rewrites it
# from X-Forwarded-For only for the proxies in FORWARDED_ALLOW_IPS (config/commands.py).
AXES_CLIENT_IP_CALLABLE = "accounts.throttle.client_ip"
# Password-reset emails per client address and per mailbox, per hour (accounts/throttle.py).
PASSWORD_RESETS_PER_ADDRESS = env_int("PASSWORD_RESETS_PER_ADDRESS", 10)
PASSWORD_RESETS_PER_MAILBOX = env_int("PASSWORD_RESETS_PER_MAILBOX", 3)
# A successful log-in forgives its own username's failures only (accounts/signals.py): axes'
# reset would also wipe the address's, letting one valid account launder a spraying run.
AXES_RESET_ON_SUCCESS = False

# Email (password resets): printed to the log unless EMAIL_HOST names an SMTP server.
EMAIL_HOST = env_str("EMAIL_HOST")
EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend" if EMAIL_HOST else "django.core.mail.backends.console.EmailBackend"
EMAIL_PORT = env_int("EMAIL_PORT", 587)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER")
EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", True)
EMAIL_TIMEOUT = env_int("EMAIL_TIMEOUT", 10)  # Django's default waits forever on a silent server
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "webmaster@localhost")
# --- end of accounts ---------------------------------------------------------------------

# Spend and limit notices for staff (docs/quotas.md): sent by email to these addresses (blank: every
# active staff user with an email) and, when set, POSTed as JSON to the webhook.
QUOTA_ALERT_EMAILS = [a.strip() for a in env_str("QUOTA_ALERT_EMAILS").split(",") if a.strip()]
QUOTA_ALERT_WEBHOOK_URL = env_str("QUOTA_ALERT_WEBHOOK_URL")
# Staff are told once a calendar month (UTC) when the organisation's spend passes this many US dollars; 0: never.
SPEND_ALERT_DOLLARS = env_float("SPEND_ALERT_DOLLARS", 0.0)

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(env_str("STATIC_ROOT") or BASE_DIR / "staticfiles")
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage" if DEBUG else "config.staticfiles.ManifestStaticFilesStorage"
    },
}

# Security headers; `check --deploy` is clean with DEBUG=False.
SESSION_COOKIE_SECURE = env_bool("SECURE_COOKIES", not DEBUG)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", not DEBUG)
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0 if DEBUG else 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = not DEBUG
SECURE_HSTS_PRELOAD = not DEBUG
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if env_bool("BEHIND_PROXY", False) else None
# Load balancers probe /healthz over plain HTTP on the private network.
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"

# The model provider. With no key, answers come from the bundled simulator.
OPENAI_API_KEY = env_str("OPENAI_API_KEY")
SIMULATOR_PORT = env_int("SIMULATOR_PORT", 8765)
OPENAI_BASE_URL = env_str("OPENAI_BASE_URL") or ("" if OPENAI_API_KEY else f"http://127.0.0.1:{SIMULATOR_PORT}/v1")
USING_SIMULATOR = not OPENAI_API_KEY
OPENAI_CONNECT_TIMEOUT = env_float("OPENAI_CONNECT_TIMEOUT", 10.0)
# Reasoning models think before they write, and o1 may think for minutes on a hard prompt: the
# first output (reasoning or text) may take this long. Once output flows, a gap between chunks
# longer than OPENAI_CHUNK_GAP_TIMEOUT is a stall. REPLY_DEADLINE_SECONDS ends every reply,
# retries and back-offs included (docs/operations.md, "Time limits").
OPENAI_FIRST_OUTPUT_TIMEOUT = env_float("OPENAI_FIRST_OUTPUT_TIMEOUT", 300.0)
OPENAI_CHUNK_GAP_TIMEOUT = env_float("OPENAI_CHUNK_GAP_TIMEOUT", 60.0)
REPLY_DEADLINE_SECONDS = env_float("REPLY_DEADLINE_SECONDS", 600.0)
# The SDK's own per-read timeout: a backstop behind the limits above.
OPENAI_READ_TIMEOUT = env_float("OPENAI_READ_TIMEOUT", 330.0)

# Streaming: how often deltas go out, how often partial text is saved.
STREAM_FLUSH_SECONDS = env_float("STREAM_FLUSH_SECONDS", 0.05)
STREAM_CHECKPOINT_SECONDS = env_float("STREAM_CHECKPOINT_SECONDS", 1.0)

MAX_MESSAGE_CHARS = env_int("MAX_MESSAGE_CHARS", 100_000)
# Attachments (chat/files.py): stored in PostgreSQL, so these bound what one user can put there.
ATTACHMENT_MAX_BYTES = env_int("ATTACHMENT_MAX_BYTES", 5 * 1024 * 1024)  # one file
ATTACHMENTS_MAX_MESSAGE_BYTES = env_int("ATTACHMENTS_MAX_MESSAGE_BYTES", 10 * 1024 * 1024)  # all files of one message
ATTACHMENTS_PER_MESSAGE = env_int("ATTACHMENTS_PER_MESSAGE", 10)
ATTACHMENTS_MAX_UNSENT = env_int("ATTACHMENTS_MAX_UNSENT", 20)  # uploaded but not yet sent, per user
# Threads for the WebSocket consumer's database work; keep below DB_POOL_MAX.
WEB_DB_THREADS = env_int("WEB_DB_THREADS", 8)
MAX_LIVE_REPLIES = env_int("MAX_LIVE_REPLIES", 3)
# The chat page says "5 o1-preview messages left until …" once a model has this many or fewer left.
FEW_LEFT_NOTICE = env_int("FEW_LEFT_NOTICE", 5)
# The largest conversation file (exported JSON) an import accepts.
IMPORT_MAX_BYTES = env_int("IMPORT_MAX_BYTES", 5_000_000)
# Retries of transient provider errors back off from this, doubling each time.
PROVIDER_RETRY_BASE_SECONDS = env_float("PROVIDER_RETRY_BASE_SECONDS", 0.5)
PROVIDER_LIMIT_WINDOW_SECONDS = env_int("PROVIDER_LIMIT_WINDOW_SECONDS", 60)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    # One line per record: time, level, logger, then " reply=<id>" when the record names a reply.
    "filters": {"reply": {"()": "config.logging.ReplyFilter"}},
    "formatters": {"line": {"format": "%(asctime)s %(levelname)s %(name)s%(reply)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "line", "filters": ["reply"]}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {"httpx": {"level": "WARNING"}, "httpx2": {"level": "WARNING"}},
}

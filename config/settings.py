"""Settings, read from the environment (see .env.example for every variable).

Defaults are safe for local use: an embedded SQLite database, DEBUG off unless asked for,
and a throwaway secret key only when DEBUG is on (with DEBUG off a SECRET_KEY is required;
`make install` writes a random one to .env). Production is switched on by environment.
"""

import sys
from decimal import Decimal, InvalidOperation
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured
from django.utils.csp import CSP

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

DEBUG = env.bool("DEBUG", default=False)
SECRET_KEY = env.str("SECRET_KEY", default="")
if not SECRET_KEY:
    if not DEBUG:
        # Fail closed: never sign sessions and tokens with a key everyone knows.
        raise ImproperlyConfigured(
            "SECRET_KEY is not set. Set it in the environment or in .env (`make install` writes a random "
            "one to .env for local use), or set DEBUG=true for a throwaway development key."
        )
    SECRET_KEY = "django-insecure-local-development-key-do-not-use-in-production"  # noqa: S105
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_filters",
    "axes",
    "collection",  # before django_tasks_db: its db_worker command survives a lost database
    "django_tasks_db",
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
    "django.middleware.csp.ContentSecurityPolicyMiddleware",
    # Last, as django-axes asks: locks out repeated failed logins.
    "axes.middleware.AxesMiddleware",
]

# Repeated failed admin logins lock the username from that address out for a while
# (django-axes; its records are in the admin under "Axes").
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env.int("LOGIN_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = env.float("LOGIN_LOCKOUT_HOURS", default=0.25)  # hours
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True

# Content-Security-Policy (Django's own): scripts only from this site or with the request's
# nonce; the admin, the browsable API and /api/docs/ (Swagger UI loads its script from a URL)
# work under it. Inline styles stay allowed: the admin's widgets set style attributes.
SECURE_CSP = {
    "default-src": [CSP.SELF],
    "script-src": [CSP.SELF, CSP.NONCE],
    "style-src": [CSP.SELF, CSP.UNSAFE_INLINE],
    "img-src": [CSP.SELF, "data:"],
    "font-src": [CSP.SELF, "data:"],
    "connect-src": [CSP.SELF],
    "object-src": [CSP.NONE],
    "base-uri": [CSP.SELF],
    "form-action": [CSP.SELF],
    "frame-ancestors": [CSP.NONE],
}

ROOT_URLCONF = "config.urls"

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
                "django.template.context_processors.csp",
            ],
        },
    },
]

WSGI_APPLICATION = "config.wsgi.application"
ASGI_APPLICATION = "config.asgi.application"

# --- Database -------------------------------------------------------------------------------
# Embedded SQLite by default; a postgres:// DATABASE_URL switches to PostgreSQL with Django's
# native psycopg connection pool.
DATABASES = {  # an empty DATABASE_URL is the default too
    "default": env.db_url_config(env.str("DATABASE_URL", default="") or f"sqlite:///{BASE_DIR / 'db.sqlite3'}"),
}
_db = DATABASES["default"]
if _db.get("ENGINE") not in ("django.db.backends.sqlite3", "django.db.backends.postgresql"):
    raise ImproperlyConfigured("DATABASE_URL must be sqlite:///path or postgres://user:password@host:port/name "
                               f"(got a URL for {_db.get('ENGINE') or 'no known database'}).")
if _db["ENGINE"] == "django.db.backends.sqlite3":
    _db["OPTIONS"] = {
        # Workers and the web server write from separate processes: wait for the lock
        # instead of failing, take the write lock at BEGIN (no upgrade deadlocks) and let
        # readers proceed while a writer commits.
        "timeout": env.int("SQLITE_TIMEOUT", default=30),
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    # Tests start real worker processes, so the test database must be a file they can open.
    _db["TEST"] = {"NAME": env.str("TEST_DATABASE_NAME", default=str(BASE_DIR / "test-db.sqlite3"))}
elif _db["ENGINE"] == "django.db.backends.postgresql":
    from config.pool import check_connection

    _db["ENGINE"] = "django.db.backends.postgresql"
    _db.setdefault("OPTIONS", {})["pool"] = {
        "min_size": env.int("DATABASE_POOL_MIN", default=1),
        "max_size": env.int("DATABASE_POOL_MAX", default=10),
        "timeout": env.int("DATABASE_POOL_TIMEOUT", default=30),
        # A connection the server dropped (restart, failover, idle reaper) is found and replaced
        # when it is checked out, instead of failing the request that gets it; and then the
        # pool's other idle ones at once (config/pool.py).
        "check": check_connection,
    }
    # Bind parameters on the server: the engine's per-page upserts carry ~1,000 parameters,
    # which client-side binding would quote in Python on every page (see bench/).
    _db["OPTIONS"]["server_side_binding"] = env.bool("DATABASE_SERVER_SIDE_BINDING", default=True)
    # Prepare a statement on the server once it has run this many times on a connection (the
    # engine repeats the same few statements for every page); empty disables it.
    if env.str("DATABASE_PREPARE_THRESHOLD", default="5"):
        _db["OPTIONS"]["prepare_threshold"] = env.int("DATABASE_PREPARE_THRESHOLD", default=5)
    # Serving processes plan a prepared statement for its values each time: a generic plan
    # ignores them, and a search for a rare word planned as if it were common read 10 million
    # rows (bench/scale_queries.py: 6 s instead of 4 ms). Workers keep PostgreSQL's choice: their
    # few checkpoint statements gain from generic plans (re-planning each page cost 20 %, bench/).
    _worker = sys.argv[1:2] == ["db_worker"]
    _plan_cache = env.str("DATABASE_PLAN_CACHE_MODE", default="auto" if _worker else "force_custom_plan")
    _db["OPTIONS"]["options"] = f"{_db['OPTIONS'].get('options', '')} -c plan_cache_mode={_plan_cache}".strip()
    # Serving processes read pages (LIMIT queries) without parallel workers: a parallel plan
    # waits for each worker's first row before it returns any, and takes cores from the other
    # requests (a two-word search's page at 10 M products: 17 ms in parallel, 11 ms serially,
    # bench/scale_queries.py). Empty: PostgreSQL's own setting, which workers keep.
    _parallel = env.str("DATABASE_PARALLEL_WORKERS", default="" if _worker else "0").strip()
    if _parallel:
        if not (_parallel.isascii() and _parallel.isdigit()) or int(_parallel) > 1024:
            raise ImproperlyConfigured("DATABASE_PARALLEL_WORKERS must be a whole number from 0 to 1024, "
                                       f"or empty for PostgreSQL's own setting (got {_parallel!r}).")
        _db["OPTIONS"]["options"] += f" -c max_parallel_workers_per_gather={int(_parallel)}"
    _db["CONN_MAX_AGE"] = 0
    if env.str("TEST_DATABASE_NAME", default=""):
        _db["TEST"] = {"NAME": env.str("TEST_DATABASE_NAME")}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# The API's throttle counters (and any other cache use). Per process by default; for several
# web processes share one, e.g. CACHE_URL=dbcache://collection_cache (after
# `manage.py createcachetable`).
CACHES = {"default": env.cache("CACHE_URL", default="locmemcache://")}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = env.str("TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
# Hashed, compressed names once `collectstatic` has run (production, `make run`); plain names
# straight from the apps otherwise (a fresh checkout, the test suite).
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "whitenoise.storage.CompressedManifestStaticFilesStorage"
            if (STATIC_ROOT / "staticfiles.json").exists() or sys.argv[1:2] == ["collectstatic"]
            else "django.contrib.staticfiles.storage.StaticFilesStorage"
        )
    },
}
# Serve straight from the app directories when collectstatic has not been run (local use).
WHITENOISE_USE_FINDERS = env.bool("WHITENOISE_USE_FINDERS", default=True)
WHITENOISE_MANIFEST_STRICT = False

# --- Production hardening (switched on by environment) --------------------------------------
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=False)
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=False)
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=False)
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=False)
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=False)
if env.bool("SECURE_PROXY_SSL_HEADER", default=False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

# --- Tasks ----------------------------------------------------------------------------------
TASKS = {
    "default": {
        "BACKEND": env.str("TASKS_BACKEND", default="django_tasks_db.DatabaseBackend"),
        "QUEUES": ["default"],
    }
}

# --- REST API -------------------------------------------------------------------------------
REST_FRAMEWORK = {
    # Token first: an anonymous request is told how to authenticate (401 with WWW-Authenticate).
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["collection.api.permissions.CanAutomate"],
    "DEFAULT_SCHEMA_CLASS": "collection.api.schema.CollectionAutoSchema",
    "EXCEPTION_HANDLER": "collection.api.errors.exception_handler",
    # One way to page through every list (collection/api/pagination.py).
    "DEFAULT_PAGINATION_CLASS": "collection.api.pagination.Cursor",
    "PAGE_SIZE": 100,
    # Request bodies are JSON only (415 otherwise): one encoding to document and validate.
    "DEFAULT_PARSER_CLASSES": ["collection.api.parsers.SafeJSONParser"],
    "TEST_REQUEST_DEFAULT_FORMAT": "json",
    # Per token (or session user) and per address for anonymous requests; the counters live in
    # the cache (CACHE_URL: per process by default, shared with e.g. redis:// in production).
    "DEFAULT_THROTTLE_CLASSES": [
        "rest_framework.throttling.UserRateThrottle",
        "rest_framework.throttling.AnonRateThrottle",
    ],
    "DEFAULT_THROTTLE_RATES": {
        "user": env.str("API_THROTTLE_USER", default="3000/minute"),
        "anon": env.str("API_THROTTLE_ANON", default="120/minute"),
    },
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Collection runs API",
    "DESCRIPTION": "Estimate, start and manage paid, budgeted data-collection runs.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
}

# --- Collection -----------------------------------------------------------------------------
# Sources are backends, registered by key with a dotted path (like Django's other backends).
COLLECTION_SOURCES = {
    "demo": "collection.sources.demo.DemoSource",
    "ebay": "collection.sources.ebay.EbaySource",
    "keepa": "collection.sources.keepa.KeepaSource",
    **env.dict("COLLECTION_EXTRA_SOURCES", default={}),
}
# A task advances one unit for at most this long before yielding its worker to other runs.
COLLECTION_SLICE_SECONDS = env.float("COLLECTION_SLICE_SECONDS", default=10.0)
# How often a worker process sweeps for interrupted runs (expired leases, lost triggers).
COLLECTION_SWEEP_SECONDS = env.float("COLLECTION_SWEEP_SECONDS", default=30.0)
# Backoff for retryable source errors: base · 2^(attempt-1) with jitter, at most the max.
COLLECTION_RETRY_BASE_SECONDS = env.float("COLLECTION_RETRY_BASE_SECONDS", default=2.0)
COLLECTION_RETRY_MAX_SECONDS = env.float("COLLECTION_RETRY_MAX_SECONDS", default=300.0)
# Recover interrupted runs when a web or worker process starts.
COLLECTION_RECOVER_ON_START = env.bool("COLLECTION_RECOVER_ON_START", default=True)
# Retention (collection/services/retention.py): how many days what grows with every run is kept
# (0 keeps it forever), and how often worker processes prune (0: never; `collection_prune` by hand).
COLLECTION_KEEP_TASK_RESULTS_DAYS = env.int("COLLECTION_KEEP_TASK_RESULTS_DAYS", default=7)
COLLECTION_KEEP_SPEND_SAMPLES_DAYS = env.int("COLLECTION_KEEP_SPEND_SAMPLES_DAYS", default=90)
COLLECTION_KEEP_EVENT_NOISE_DAYS = env.int("COLLECTION_KEEP_EVENT_NOISE_DAYS", default=90)
COLLECTION_KEEP_IDEMPOTENCY_KEYS_DAYS = env.int("COLLECTION_KEEP_IDEMPOTENCY_KEYS_DAYS", default=7)
# What each run saw (a row a product and seller a run returned): forever unless set.
COLLECTION_KEEP_SEEN_IN_RUN_DAYS = env.int("COLLECTION_KEEP_SEEN_IN_RUN_DAYS", default=0)
COLLECTION_PRUNE_EVERY_SECONDS = env.float("COLLECTION_PRUNE_EVERY_SECONDS", default=3600.0)
# Product search (collection/services/search_index.py): worker processes look every this many
# seconds whether to index the products the checkpoint queued (0: never; `manage.py
# collection_search_index`): when they stored no page in that time, or their last pass is
# COLLECTION_SEARCH_MAX_LAG_SECONDS old.
COLLECTION_SEARCH_INDEX_SECONDS = env.float("COLLECTION_SEARCH_INDEX_SECONDS", default=5.0)
COLLECTION_SEARCH_MAX_LAG_SECONDS = env.float("COLLECTION_SEARCH_MAX_LAG_SECONDS", default=60.0)
# Off, the checkpoint queues nothing: products stored meanwhile are not found by a search until
# `manage.py collection_search_index --all`. For measuring what search costs (bench/).
COLLECTION_TITLE_SEARCH = env.bool("COLLECTION_TITLE_SEARCH", default=True)

DEMO_PAGE_SIZE = env.int("DEMO_PAGE_SIZE", default=20)
DEMO_COST_PER_REQUEST = env.str("DEMO_COST_PER_REQUEST", default="0.01")
DEMO_COST_PER_RESULT = env.str("DEMO_COST_PER_RESULT", default="0.001")
DEMO_LATENCY_MS = env.int("DEMO_LATENCY_MS", default=0)

# eBay Browse API (collection/sources/ebay.py). Credentials live in the environment only.
EBAY_CLIENT_ID = env.str("EBAY_CLIENT_ID", default="")
EBAY_CLIENT_SECRET = env.str("EBAY_CLIENT_SECRET", default="")
EBAY_ENV = env.str("EBAY_ENV", default="sandbox")
EBAY_MARKETPLACE_ID = env.str("EBAY_MARKETPLACE_ID", default="EBAY_US")
EBAY_BASE_URL = env.str("EBAY_BASE_URL", default="")
EBAY_PAGE_SIZE = env.int("EBAY_PAGE_SIZE", default=200)
EBAY_COST_PER_CALL = env.str("EBAY_COST_PER_CALL", default="0")
EBAY_DAILY_CALL_QUOTA = env.int("EBAY_DAILY_CALL_QUOTA", default=5000)
EBAY_TIMEOUT_SECONDS = env.float("EBAY_TIMEOUT_SECONDS", default=10.0)
# Without a buyingOptions filter eBay returns Buy It Now listings only: ask for auctions too.
EBAY_BUYING_OPTIONS = [o.strip().upper() for o in env.list("EBAY_BUYING_OPTIONS", default=["FIXED_PRICE", "AUCTION"])]
EBAY_PRICE_CURRENCY = env.str("EBAY_PRICE_CURRENCY", default="USD")  # of price-band partitions
if not 1 <= EBAY_PAGE_SIZE <= 200:
    raise ImproperlyConfigured("EBAY_PAGE_SIZE must be between 1 and 200 (eBay's limit).")
if not EBAY_BUYING_OPTIONS or set(EBAY_BUYING_OPTIONS) - {"FIXED_PRICE", "AUCTION", "BEST_OFFER", "CLASSIFIED_AD"}:
    raise ImproperlyConfigured("EBAY_BUYING_OPTIONS must list FIXED_PRICE, AUCTION, BEST_OFFER or CLASSIFIED_AD.")

# Keepa API for Amazon (collection/sources/keepa.py). The key lives in the environment only.
KEEPA_API_KEY = env.str("KEEPA_API_KEY", default="")
KEEPA_API_URL = env.str("KEEPA_API_URL", default="https://api.keepa.com")
KEEPA_DOMAIN = env.int("KEEPA_DOMAIN", default=1)  # 1 = amazon.com, 2 = .co.uk, 3 = .de, …
KEEPA_TOKEN_PRICE = env.str("KEEPA_TOKEN_PRICE", default="0.001")  # money per token, in settings' currency
KEEPA_OFFERS = env.int("KEEPA_OFFERS", default=20)  # offers requested per product (Keepa: 20-100)
KEEPA_PAGE_SIZE = env.int("KEEPA_PAGE_SIZE", default=50)  # ASINs per page (Product Finder's perPage, 50+)
KEEPA_SELLERS_PER_PAGE = env.int("KEEPA_SELLERS_PER_PAGE", default=100)  # seller lookups a page may make
KEEPA_TIMEOUT_SECONDS = env.float("KEEPA_TIMEOUT_SECONDS", default=20.0)
if not 20 <= KEEPA_OFFERS <= 100:
    raise ImproperlyConfigured("KEEPA_OFFERS must be between 20 and 100 (Keepa's range for offers).")
if not 50 <= KEEPA_PAGE_SIZE <= 1000:
    raise ImproperlyConfigured("KEEPA_PAGE_SIZE must be between 50 (Keepa's smallest perPage) and 1000.")
if not 0 <= KEEPA_SELLERS_PER_PAGE <= 1000:
    raise ImproperlyConfigured("KEEPA_SELLERS_PER_PAGE must be between 0 and 1000.")
if KEEPA_DOMAIN not in (1, 2, 3, 4, 5, 6, 8, 9, 10, 11, 12):
    raise ImproperlyConfigured("KEEPA_DOMAIN must be a Keepa domain id: 1 (.com), 2 (.co.uk), 3 (.de), 4 (.fr), "
                               "5 (.co.jp), 6 (.ca), 8 (.it), 9 (.es), 10 (.in), 11 (.com.mx), 12 (.com.br).")
try:
    if Decimal(KEEPA_TOKEN_PRICE) < 0:
        raise InvalidOperation
except InvalidOperation:
    raise ImproperlyConfigured("KEEPA_TOKEN_PRICE must be a decimal amount of money per token, e.g. 0.001.") from None

LOG_LEVEL = env.str("LOG_LEVEL", default="INFO")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    # Every line is scrubbed of credentials (e.g. an HTTP client logging a URL with ?key=…).
    "filters": {"redact": {"()": "collection.redact.RedactingFilter"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain", "filters": ["redact"]}},
    "root": {"handlers": ["console"], "level": env.str("ROOT_LOG_LEVEL", default="WARNING")},
    "loggers": {
        "collection": {"handlers": ["console"], "level": LOG_LEVEL, "propagate": False},
        "django": {"handlers": ["console"], "level": env.str("DJANGO_LOG_LEVEL", default="INFO"), "propagate": False},
    },
}

LOGIN_URL = "admin:login"

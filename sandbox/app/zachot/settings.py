"""Settings from the environment; the env file on the server provides them."""

import os

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
WORKER_CONCURRENCY = int(os.environ.get("WORKER_CONCURRENCY", "2"))
API_HOST = os.environ.get("API_HOST", "0.0.0.0")
API_PORT = int(os.environ.get("API_PORT", "8000"))
DONE_KEY = "zachot:done"  # Redis set of processed job ids

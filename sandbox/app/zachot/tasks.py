"""Dramatiq broker and actors. `dramatiq zachot.tasks` runs the worker."""

import logging
import time

import dramatiq
import redis
from dramatiq.brokers.redis import RedisBroker

from zachot import settings

dramatiq.set_broker(RedisBroker(url=settings.REDIS_URL))
log = logging.getLogger("zachot.worker")


def redis_client() -> redis.Redis:
    return redis.Redis.from_url(settings.REDIS_URL, socket_timeout=2, socket_connect_timeout=2)


@dramatiq.actor(queue_name="default", max_retries=3)
def record_job(job_id: str) -> None:
    """Mark a job as done, so callers can see the worker really ran it."""
    redis_client().sadd(settings.DONE_KEY, job_id)
    log.warning("job %s done at %s", job_id, time.strftime("%Y-%m-%dT%H:%M:%S"))

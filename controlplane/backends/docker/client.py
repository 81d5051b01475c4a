"""docker-py behind asyncio: its own thread pool, bounded retries, and our error tree.

docker-py is blocking. Every engine call goes through ``DockerEngine.call``, which runs it in this
engine's own thread pool (never on the event loop, never in the loop's default executor, so a slow engine
cannot starve the rest of the process), retries transient failures (connection errors, 5xx) a bounded
number of times, and leaves engine errors to the caller, who turns them into ``core.errors`` with
``engine_error(...) from exc``. The small container operations an execution needs at its end (inspect,
one-shot stats, wait, kill, remove) live here too, each with the engine's "already gone" answers
treated as the success they are.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import docker
import requests
from docker.errors import APIError, DockerException
from docker.errors import NotFound as DockerNotFound
from docker.utils import version_gte
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_exponential

from controlplane.core.errors import BackendError, BackendUnavailable
from controlplane.core.settings import Settings

log = logging.getLogger(__name__)
T = TypeVar("T")

ATTEMPTS = 3


def unreachable(exc: BaseException) -> bool:
    """The engine did not answer (as opposed to answering with an error)."""
    if isinstance(exc, APIError):
        return False
    return isinstance(exc, requests.exceptions.RequestException | DockerException)


def transient(exc: BaseException) -> bool:
    if isinstance(exc, APIError):
        return exc.is_server_error()
    # ReadTimeout is not retried: the engine may be doing what we asked (a create), or simply slow
    return isinstance(exc, requests.exceptions.ConnectionError | DockerException)


def engine_error(exc: BaseException, what: str, kind: type[BackendError] = BackendError) -> BackendError:
    """Our error for an engine failure; raise it ``from exc``."""
    if unreachable(exc):
        return BackendUnavailable(f"the Docker engine did not answer while {what}: {exc}")
    detail = exc.explanation if isinstance(exc, APIError) and exc.explanation else str(exc)
    return kind(f"the Docker engine failed while {what}: {detail}")


class DockerEngine:
    def __init__(self, settings: Settings, *, max_workers: int = 16) -> None:
        self.settings = settings
        self._max_workers = max_workers
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="cp-docker")
        self._client: docker.DockerClient | None = None
        self._lock = threading.Lock()

    def client(self) -> docker.DockerClient:
        """Blocking. Made on first use: version="auto" asks the engine, which must not happen at import
        or construction time (the engine may be down; ``ping`` reports that)."""
        with self._lock:
            if self._client is None:
                kw: dict[str, Any] = {
                    "version": "auto",
                    "timeout": math.ceil(self.settings.docker_timeout_seconds),
                    "max_pool_size": self._max_workers + 4,
                }
                url = self.settings.docker_url
                self._client = docker.DockerClient(base_url=url, **kw) if url else docker.from_env(**kw)
            return self._client

    async def run(self, fn: Callable[[], T]) -> T:
        """Run a blocking callable in the pool, once."""
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn)

    async def call(self, fn: Callable[[docker.APIClient], T], *, retry: bool = True) -> T:
        """Run ``fn(api)`` in the pool, retrying transient failures unless ``retry`` is False."""

        def run() -> T:
            return fn(self.client().api)

        if not retry:
            return await self.run(run)
        async for attempt in AsyncRetrying(
            stop=stop_after_attempt(ATTEMPTS),
            wait=wait_exponential(multiplier=0.1, max=1.0),
            retry=retry_if_exception(transient),
            reraise=True,
        ):
            with attempt:
                return await self.run(run)
        raise AssertionError("unreachable")  # pragma: no cover

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await self.run(client.close)
        self._pool.shutdown(wait=False, cancel_futures=True)

    # --- container operations (docker_execution.Engine) -------------------------------------------

    async def inspect(self, ref: str) -> dict[str, Any] | None:
        """The container's inspect document, or None when it does not exist."""
        try:
            info: dict[str, Any] = await self.call(lambda api: api.inspect_container(ref))
        except DockerNotFound:
            return None
        except Exception as exc:
            raise engine_error(exc, f"inspecting {ref}") from exc
        return info

    async def one_shot_stats(self, ref: str) -> dict[str, Any] | None:
        """Counters of a running container in ~10 ms (API >= 1.41); None when unavailable: without
        one-shot the engine samples twice, 1-2 s apart, which a run's end should not wait for."""
        try:
            stats: dict[str, Any] = await self.call(
                lambda api: api.stats(ref, stream=False, one_shot=True) if version_gte(api.api_version, "1.41") else {}
            )
        except Exception as exc:  # usage then comes from the runner's own numbers
            log.debug("no stats for %s: %s", ref, exc)
            return None
        return stats or None

    async def wait_exit(self, ref: str) -> bool:
        """True once the container has stopped (or is gone); False if the engine's wait timed out."""
        timeout = math.ceil(self.settings.docker_timeout_seconds)
        try:
            await self.call(lambda api: api.wait(ref, timeout=timeout), retry=False)
        except DockerNotFound:
            return True
        except (requests.exceptions.Timeout, requests.exceptions.ConnectionError):
            return False
        except Exception as exc:
            raise engine_error(exc, f"waiting for {ref}") from exc
        return True

    async def kill(self, ref: str) -> None:
        try:
            await self.call(lambda api: api.kill(ref))
        except APIError as exc:
            if exc.status_code not in (404, 409):  # gone, or not running any more
                raise engine_error(exc, f"killing {ref}") from exc
        except Exception as exc:
            raise engine_error(exc, f"killing {ref}") from exc

    async def remove(self, ref: str) -> None:
        """Kill and remove in one call; a missing container or a removal in progress (409) is success."""
        try:
            await self.call(lambda api: api.remove_container(ref, force=True))
        except APIError as exc:
            if exc.status_code not in (404, 409):
                raise engine_error(exc, f"removing {ref}") from exc
        except Exception as exc:
            raise engine_error(exc, f"removing {ref}") from exc

    async def remove_quietly(self, ref: str) -> None:
        try:
            await self.remove(ref)
        except BackendError as exc:
            log.warning("could not remove %s: %s", ref, exc)

"""The few Kubernetes API calls the backend makes: JSON in, JSON out, rate-limited and retried.

kubernetes_asyncio brings what is hard to get right (kubeconfig and in-cluster loading, client
certificates, exec/OIDC tokens, TLS); its generated models are not used: manifests are plain dicts (see
``kubernetes_manifests``) and responses are read as JSON, so one code path serves objects, watches and
log streams alike.

Every request first takes a token from a bucket (``k8s_qps`` per second, ``k8s_burst`` deep), so a burst
of runs cannot flood the API server. 429, 5xx and connection errors are retried with tenacity (``k8s_retries``
attempts), honouring ``Retry-After``; 404/409/410 become ``KubeNotFound``/``KubeConflict``/``KubeGone``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
from kubernetes_asyncio import client as k8s_client
from kubernetes_asyncio import config as k8s_config
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt

from controlplane.core.errors import BackendError, BackendUnavailable
from controlplane.core.settings import Settings

log = logging.getLogger(__name__)

T = TypeVar("T")
MAX_RETRY_AFTER = 30.0


class KubeError(BackendError):
    """The API server answered with an error status."""

    def __init__(self, detail: str, *, status: int = 0, retry_after: float | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.retry_after = retry_after


class KubeNotFound(KubeError):
    pass


class KubeConflict(KubeError):
    pass


class KubeGone(KubeError):
    """410: the resourceVersion a watch asked for is too old; list again."""


class KubeUnavailable(BackendUnavailable):
    """The API server could not be reached (after retries)."""


def _retryable(exc: BaseException) -> bool:
    if isinstance(exc, KubeUnavailable):
        return True
    return isinstance(exc, KubeError) and (exc.status == 429 or exc.status >= 500)


def _wait(state: RetryCallState) -> float:
    exc = state.outcome.exception() if state.outcome else None
    if isinstance(exc, KubeError) and exc.retry_after is not None:
        return min(MAX_RETRY_AFTER, max(0.0, exc.retry_after))
    backoff: float = min(5.0, 0.2 * 2.0 ** max(0, state.attempt_number - 1))
    return backoff + random.uniform(0, backoff / 2)  # noqa: S311 - jitter, not cryptography


class TokenBucket:
    """``rate`` tokens per second, at most ``burst`` saved up; ``take()`` waits for one."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = float(burst)
        self._tokens = float(burst)
        self._at = time.monotonic()
        self._lock = asyncio.Lock()

    async def take(self) -> None:
        async with self._lock:
            while True:
                now = time.monotonic()
                self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
                self._at = now
                if self._tokens >= 1:
                    self._tokens -= 1
                    return
                await asyncio.sleep((1 - self._tokens) / self.rate)


async def load_configuration(settings: Settings, kubeconfig: Path | None = None) -> k8s_client.Configuration:
    """Kubeconfig given (argument, then CP_K8S_KUBECONFIG), else in-cluster, else $KUBECONFIG/~/.kube/config."""
    cfg = k8s_client.Configuration()
    path = kubeconfig or settings.k8s_kubeconfig
    try:
        if path is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
            k8s_config.load_incluster_config(client_configuration=cfg)  # type: ignore[no-untyped-call]
        else:
            if path is None:
                path = Path(os.environ.get("KUBECONFIG") or "~/.kube/config").expanduser()
            await k8s_config.load_kube_config(
                config_file=str(path), context=settings.k8s_context, client_configuration=cfg, persist_config=False
            )
    except Exception as exc:
        raise KubeUnavailable(f"cannot load the Kubernetes client configuration: {exc}") from exc
    return cfg


class KubeClient:
    """One ApiClient for the backend's lifetime (created lazily: loading a kubeconfig is async)."""

    def __init__(self, settings: Settings, *, kubeconfig: Path | None = None) -> None:
        self.settings = settings
        self.kubeconfig = kubeconfig
        self.bucket = TokenBucket(settings.k8s_qps, settings.k8s_burst)
        self._api: k8s_client.ApiClient | None = None
        self._lock = asyncio.Lock()

    async def api(self) -> k8s_client.ApiClient:
        async with self._lock:
            if self._api is None:
                cfg = await load_configuration(self.settings, self.kubeconfig)
                self._api = k8s_client.ApiClient(cfg)
            return self._api

    async def close(self) -> None:
        if self._api is not None:
            await self._api.close()
            self._api = None

    async def retrying(self, call: Callable[[], Awaitable[T]]) -> T:
        async for attempt in AsyncRetrying(
            stop=stop_after_attempt(self.settings.k8s_retries),
            wait=_wait,
            retry=retry_if_exception(_retryable),
            reraise=True,
        ):
            with attempt:
                return await call()
        raise AssertionError("unreachable")  # pragma: no cover - reraise=True always ends above

    async def _send(
        self, method: str, path: str, *, query: dict[str, Any] | None, body: Any, timeout: Any
    ) -> aiohttp.ClientResponse:
        api = await self.api()
        await self.bucket.take()
        params = [(k, v) for k, v in (query or {}).items() if v is not None]
        try:
            resp: aiohttp.ClientResponse = await api.call_api(
                path,
                method,
                query_params=params,
                header_params={"Accept": "application/json", "Content-Type": "application/json"},
                body=body,
                auth_settings=["BearerToken"],
                _preload_content=False,
                _request_timeout=timeout,
            )
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise KubeUnavailable(f"the Kubernetes API does not answer ({method} {path}): {exc!r}") from exc
        if resp.status >= 400:
            text = await _read_text(resp)
            raise _status_error(method, path, resp.status, text, resp.headers.get("Retry-After"))
        return resp

    async def request(
        self, method: str, path: str, *, query: dict[str, Any] | None = None, body: Any = None
    ) -> dict[str, Any]:
        """One call returning its JSON object (retried as described above)."""
        timeout = self.settings.k8s_request_timeout_seconds

        async def once() -> dict[str, Any]:
            resp = await self._send(method, path, query=query, body=body, timeout=timeout)
            try:
                raw = await resp.read()
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                raise KubeUnavailable(f"reading the answer to {method} {path} failed: {exc!r}") from exc
            finally:
                resp.release()
            try:
                doc = json.loads(raw) if raw else {}
            except ValueError as exc:
                raise KubeError(f"{method} {path} answered something that is not JSON", status=resp.status) from exc
            return doc if isinstance(doc, dict) else {}

        return await self.retrying(once)

    async def stream(
        self, path: str, *, query: dict[str, Any] | None = None, read_timeout: float | None = None
    ) -> aiohttp.ClientResponse:
        """Open a long-lived GET (watch, follow=true logs); the caller reads ``.content`` and releases it.
        Opening is retried; a broken stream is the caller's to resume. ``read_timeout``: longest silence
        (None for logs: a quiet script is not a dead connection)."""
        timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=self.settings.k8s_request_timeout_seconds, sock_read=read_timeout
        )
        return await self.retrying(lambda: self._send("GET", path, query=query, body=None, timeout=timeout))

    async def lines(
        self, path: str, *, query: dict[str, Any] | None = None, read_timeout: float | None = None
    ) -> AsyncIterator[dict[str, Any]]:
        """A watch: one JSON event per line until the server ends it."""
        resp = await self.stream(path, query=query, read_timeout=read_timeout)
        try:
            async for line in resp.content:
                if line.strip():
                    event = json.loads(line)
                    if isinstance(event, dict):
                        yield event
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise KubeUnavailable(f"the watch on {path} broke: {exc!r}") from exc
        finally:
            resp.release()


async def _read_text(resp: aiohttp.ClientResponse) -> str:
    try:
        return (await resp.read())[:2000].decode(errors="replace")
    except Exception:
        return ""
    finally:
        resp.release()


def _status_error(method: str, path: str, status: int, text: str, retry_after: str | None) -> KubeError:
    message = text
    try:
        doc = json.loads(text)
        if isinstance(doc, dict) and doc.get("message"):
            message = str(doc["message"])
    except ValueError:
        pass
    detail = f"{method} {path}: {status} {message}".strip()
    delay: float | None = None
    if retry_after:
        try:
            delay = float(retry_after)
        except ValueError:
            delay = None
    cls = {404: KubeNotFound, 409: KubeConflict, 410: KubeGone}.get(status, KubeError)
    return cls(detail, status=status, retry_after=delay)

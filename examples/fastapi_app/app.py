"""FastAPI under uvicorn, with logging configured by uvicorn's ``--log-config``.

    logship receive                     # in another terminal
    cd examples/fastapi_app
    LOGSHIP_URL=http://127.0.0.1:9880/fastapi uvicorn app:app --log-config log_config.json
    curl -H 'X-Request-ID: r-1' localhost:8000/orders/7; curl localhost:8000/boom

uvicorn applies ``log_config.json`` with ``dictConfig`` in each of its server
processes before it imports this module: the handler ships uvicorn's own
lines (start-up, the access log, "Exception in ASGI application" with its
traceback) and the application's. The file names no URL: ``LOGSHIP_URL``
gives it.

A middleware binds the request's id, method and path with ``logship.bind``.
Each request runs in an asyncio task of its own, so the fields are on every
event logged while it is handled: in the route, in what the route awaits, in
a plain ``def`` route (run on a thread in a copy of the context) and in
uvicorn's access line.

``python app.py`` (``PORT=...``) runs the same server through ``uvicorn.run``,
with ``logship.install_signal_handlers()`` first; see ``__main__`` below.
"""

from __future__ import annotations

import asyncio
import logging
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request, Response

import logship

log = logging.getLogger("shop.orders")


def deliver_queued_events(timeout: float = 5.0) -> None:
    """Wait until the root logger's ShipHandlers have delivered what they hold, or ``timeout``."""
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logship.ShipHandler):
            handler.flush(timeout)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Deliver the queued events when the server stops."""
    yield
    # On SIGTERM uvicorn shuts down gracefully, then ends its process with that
    # same signal, so exit handlers (logging.shutdown among them) never run:
    # deliver now. On a thread, so that the event loop stays free meanwhile.
    await asyncio.to_thread(deliver_queued_events)


app = FastAPI(lifespan=lifespan)


@app.middleware("http")
async def request_context(
    request: Request, call_next: Callable[[Request], Awaitable[Response]]
) -> Response:
    """Bind the request's facts for every event logged while it is handled."""
    request_id = request.headers.get("x-request-id") or uuid.uuid4().hex
    # bind, not a `with logship.context(...)` block: uvicorn logs the access line
    # (and an unhandled exception) in this request's task after this function
    # has returned, and those should carry the request id too. The task ends
    # with the request, and the fields with it.
    logship.bind(request_id=request_id, method=request.method, path=request.url.path)
    response = await call_next(request)
    response.headers["X-Request-ID"] = request_id
    return response


async def price(order_id: int) -> int:
    """A coroutine the route awaits: it sees the fields bound for the request."""
    await asyncio.sleep(0)  # stands for a call to a database or another service
    cents = 1250 + order_id
    log.info("order %d priced", order_id, extra={"cents": cents})
    return cents


@app.get("/orders/{order_id}")
async def order(order_id: int) -> dict[str, int]:
    log.info("order %d looked up", order_id, extra={"order_id": order_id})
    return {"order": order_id, "cents": await price(order_id)}


@app.get("/report")
def report() -> dict[str, str]:
    # A plain def: FastAPI runs it on a worker thread, in a copy of the request's context.
    log.info("report built")
    return {"report": "ready"}


@app.get("/boom")
async def boom() -> None:
    raise RuntimeError("the payment service is down")  # uvicorn logs it with its traceback


if __name__ == "__main__":
    import uvicorn

    # Installed before uvicorn takes SIGTERM over: after its graceful shutdown
    # uvicorn raises the signal again with this handler back in place, which
    # turns it into a normal exit (status 143), so that logging.shutdown also
    # delivers uvicorn's last lines.
    logship.install_signal_handlers()
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=int(os.environ.get("PORT", "8000")),
        log_config=os.path.join(os.path.dirname(os.path.abspath(__file__)), "log_config.json"),
    )

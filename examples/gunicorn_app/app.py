"""A WSGI app served by gunicorn; logging is configured in gunicorn.conf.py.

    logship receive                                 # in another terminal
    cd examples/gunicorn_app && gunicorn -c gunicorn.conf.py app:app
    curl -H 'X-Request-ID: r-1' localhost:8000/hello; curl localhost:8000/boom

Each request logs one event carrying its X-Request-ID and the worker's pid.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Callable, Iterable
from typing import Any

log = logging.getLogger("example.gunicorn")

# With preload_app = True this runs once, in the master, before the workers fork.
log.info("app loaded", extra={"loaded_in": os.getpid()})


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    path = environ.get("PATH_INFO", "/")
    if path == "/boom":
        # gunicorn answers 500 and logs "Error handling request" with the traceback.
        raise RuntimeError("the payment service is down")
    request_id = environ.get("HTTP_X_REQUEST_ID") or uuid.uuid4().hex
    log.info("handled %s", path, extra={"request_id": request_id, "path": path})
    body = f"{request_id} handled by worker {os.getpid()}\n".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]

from __future__ import annotations

import logging

from django.http import HttpRequest, HttpResponse

log = logging.getLogger(__name__)


def hello(request: HttpRequest) -> HttpResponse:
    name = request.GET.get("name", "world")
    log.info("said hello to %s", name, extra={"path": request.path, "visitor": name})
    return HttpResponse(f"hello, {name}\n")


def boom(request: HttpRequest) -> HttpResponse:
    # Django answers 500 and logs "Internal Server Error: /boom/" on django.request,
    # with the traceback, status_code=500 and the request (shipped as its repr).
    raise RuntimeError("the payment service is down")

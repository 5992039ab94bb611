from __future__ import annotations

import logging

from django.http import HttpRequest, HttpResponse

log = logging.getLogger(__name__)


def hello(request: HttpRequest) -> HttpResponse:
    log.info("said hello to %s", request.GET.get("name", "nobody"), extra={"path": request.path})
    return HttpResponse("hello\n")


def boom(request: HttpRequest) -> HttpResponse:
    raise RuntimeError("boom: the view failed")

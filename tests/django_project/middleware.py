"""An access log: one event per request, with the request's facts as ``extra=`` fields."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

log = logging.getLogger("django_project.access")


def access_log(get_response: Callable[[HttpRequest], HttpResponse]) -> Callable[..., HttpResponse]:
    def middleware(request: HttpRequest) -> HttpResponse:
        started = time.monotonic()
        host = request.get_host()  # validates Host against ALLOWED_HOSTS, as CommonMiddleware does
        response = get_response(request)
        log.info(
            "%s %s %d",
            request.method,
            request.path,
            response.status_code,
            extra={
                "host": host,
                "method": request.method,
                "path": request.path,
                "status_code": response.status_code,
                "duration_ms": round((time.monotonic() - started) * 1000, 3),
            },
        )
        return response

    return middleware

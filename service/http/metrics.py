"""`GET /metrics`: the Prometheus exposition (service.metrics), behind the admin bearer token.

Counts and lags are not secrets, but they tell an outsider how the service is used and how
it fails; Prometheus sends the token with `authorization: {credentials_file: …}`.
"""

from __future__ import annotations

from litestar import Response, Router, get
from prometheus_client import CONTENT_TYPE_LATEST

from service.http.admin import AdminRefused, admin_guard, admin_refused
from service.http.route_docs import METRICS_DOC
from service.metrics import Metrics
from service.settings import Settings

PATH = "/metrics"
MEDIA_TYPE = CONTENT_TYPE_LATEST.split("; charset=")[0]  # Litestar adds the charset to text/*


def metrics_router(settings: Settings, metrics: Metrics) -> Router:
    @get(PATH, summary="Prometheus metrics", cache=False, operation_class=METRICS_DOC)
    async def scrape() -> Response[bytes]:
        return Response(
            await metrics.scrape(),
            media_type=MEDIA_TYPE,
            headers={"Cache-Control": "no-store"},
        )

    return Router(
        "/",
        route_handlers=[scrape],
        guards=[admin_guard],
        exception_handlers={AdminRefused: admin_refused},
        tags=["operations"],
        opt={"settings": settings},
    )

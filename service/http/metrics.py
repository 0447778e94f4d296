"""`GET /metrics`: the Prometheus exposition (service.observability.metrics), behind a metrics
credential
(or an operator one).

Counts and lags are not secrets, but they tell an outsider how the service is used and how
it fails; Prometheus sends its `metrics` credential with `authorization: {credentials_file: …}`,
and that credential can read nothing else.
"""

from __future__ import annotations

from litestar import Response, Router, get
from prometheus_client import CONTENT_TYPE_LATEST

from service.domain.access import METRICS
from service.http.access import AccessGate
from service.http.guarded import guarded_router
from service.http.route_docs import METRICS_DOC
from service.observability.metrics import Metrics

PATH = "/metrics"
MEDIA_TYPE = CONTENT_TYPE_LATEST.split("; charset=")[0]  # Litestar adds the charset to text/*


def metrics_router(gate: AccessGate, metrics: Metrics) -> Router:
    @get(PATH, summary="Prometheus metrics", cache=False, operation_class=METRICS_DOC)
    async def scrape() -> Response[bytes]:
        return Response(
            await metrics.scrape(),
            media_type=MEDIA_TYPE,
            headers={"Cache-Control": "no-store"},
        )

    return guarded_router([scrape], gate, METRICS, tag="operations")

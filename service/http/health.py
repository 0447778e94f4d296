"""Liveness and readiness probes for load balancers and orchestrators."""

from __future__ import annotations

from litestar import Controller, Response, get
from litestar.di import NamedDependency
from litestar.status_codes import HTTP_200_OK, HTTP_503_SERVICE_UNAVAILABLE

from service.http.route_docs import HEALTH_DOC, READY_DOC
from service.resources import Resources


class HealthController(Controller):
    tags = ["operations"]  # noqa: RUF012 - Litestar reads it as a class attribute

    @get("/healthz", cache=False, summary="Liveness: the process answers",
         operation_class=HEALTH_DOC)  # fmt: skip
    async def healthz(self) -> dict[str, str]:
        return {"status": "ok"}

    @get("/readyz", cache=False, summary="Readiness: Postgres, migrations and NATS",
         operation_class=READY_DOC)  # fmt: skip
    async def readyz(self, resources: NamedDependency[Resources]) -> Response[dict[str, object]]:
        reasons = await resources.unready_reasons()
        if reasons:
            body: dict[str, object] = {"status": "unavailable", "reasons": reasons}
            return Response(body, status_code=HTTP_503_SERVICE_UNAVAILABLE)
        return Response({"status": "ok"}, status_code=HTTP_200_OK)

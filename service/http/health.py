"""Liveness and readiness probes for load balancers and orchestrators.

`/readyz` tells anyone only whether this process takes traffic (200 `ok` or 503
`unavailable`): what is wrong, the version and the tenants that failed to load are for the
holder of an `operator` or `metrics` credential (security issue 12, finding 9), since they
map the deployment for an attacker. A wrong or missing credential gets the short answer,
never a 401: a probe's verdict does not depend on it.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Any

from litestar import Controller, Request, Response, get
from litestar.di import NamedDependency
from litestar.status_codes import HTTP_200_OK, HTTP_503_SERVICE_UNAVAILABLE

from service.domain.access import METRICS
from service.http.access import ACCESS_GATE, AccessGate
from service.http.route_docs import HEALTH_DOC, READY_DOC
from service.runtime.resources import Resources


def _version() -> str:
    try:
        return version("authledger")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


class HealthController(Controller):
    tags = ["operations"]  # noqa: RUF012 - Litestar reads it as a class attribute

    @get("/healthz", cache=False, summary="Liveness: the process answers",
         operation_class=HEALTH_DOC)  # fmt: skip
    async def healthz(self) -> dict[str, str]:
        return {"status": "ok"}

    @get("/readyz", cache=False, summary="Readiness: Postgres, migrations and NATS",
         operation_class=READY_DOC)  # fmt: skip
    async def readyz(
        self, request: Request[Any, Any, Any], resources: NamedDependency[Resources]
    ) -> Response[dict[str, object]]:
        reasons = await resources.unready_reasons()
        status = HTTP_503_SERVICE_UNAVAILABLE if reasons else HTTP_200_OK
        body: dict[str, object] = {"status": "unavailable" if reasons else "ok"}
        gate = request.app.state.get(ACCESS_GATE)
        if isinstance(gate, AccessGate) and await gate.holds(request, METRICS):
            broken = resources.tenants.unavailable() if resources.tenants is not None else []
            body |= {
                "reasons": reasons,
                "version": _version(),
                "nats": "connected" if resources.nats.connected else "disconnected",
                "tenants_unavailable": broken,
            }
        return Response(body, status_code=status, headers={"Cache-Control": "no-store"})

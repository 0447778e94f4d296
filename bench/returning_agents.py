"""(h) of bench/write_path.py: ID-JAG registrations of returning users, ES256, as deployed.

A test agent provider (tests/support/idp.py) serves its JWKS over HTTP on 127.0.0.1 in the
bench's own event loop and is trusted through the admin API. The ID-JAGs are minted before
each run (real time, 300 s, a jti each) with subjects round-robin over SUBJECTS: the warm-up
registers every subject once (a user, a delegation and a credential each), so the measured
runs at 16 and 64 connections are returning users (`delegation.used` and a credential).
bench/wrk/id_jag.lua sends each token once, so wrk runs with one thread here. Every 200 answer
must have its credential in the log (`credential.issued`, issued_via id_jag, by request id).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from console import log
from id_jag import ID_JAG, EventLog, mint_tokens
from registrations import Committed
from served import Server, http_call
from wrk_runs import SETTLE_SECONDS, StopWhen, Wrk, WrkRun

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # tests.support.idp, when the project is not installed editable
    sys.path.insert(0, str(ROOT))

from tests.support.idp import IdentityProvider  # noqa: E402

SUBJECTS = 1_000  # returning users, round-robin
TOKENS_PER_RUN = 40_000  # more than 4,000/s for 10 s; a run that uses them all is void
LIFETIME = timedelta(seconds=300)
# What the server needs to fetch a provider's keys from 127.0.0.1 over plain http.
LOOPBACK_PROVIDER_ENV = {
    "AUTHLEDGER_JWKS_ALLOW_LOOPBACK_HTTP": "true",
    "AUTHLEDGER_OUTBOUND_ALLOW": "127.0.0.0/8 ::1",
}


@dataclass
class ReturningFigures:
    runs: dict[int, WrkRun] = field(default_factory=dict)
    committed: dict[int, Committed] = field(default_factory=dict)
    exhausted: int = 0  # requests wrk could not send because the tokens ran out


class ReturningAgents:
    def __init__(
        self,
        server: Server,
        workdir: Path,
        events: EventLog,
        admin_token: str,
        seconds: float,
        *,
        spy: Callable[[str], list[subprocess.Popen[bytes]]] | None = None,
    ) -> None:
        self.server, self.workdir, self.events = server, workdir, events
        self.spy = spy  # py-spy on the HTTP children and the worker, for the c=16 run
        self.admin_token, self.seconds = admin_token, seconds
        self.wrk = Wrk(server, workdir, 1)  # id_jag.lua: each token once, so one thread
        self.figures = ReturningFigures()

    async def measure(self) -> ReturningFigures:
        async with IdentityProvider(alg="ES256") as idp:
            await self._trust(idp)
            aud = self.server.url  # the issuer of `serve` without AUTHLEDGER_PUBLIC_URL
            warmup = self.workdir / "returning-warmup.jwt"
            # Two rounds of the subjects: when the tokens run out, wrk's thread stops and drops
            # the requests still in flight, so a single round would leave some unregistered;
            # the run stops once every subject has its delegation.
            await asyncio.to_thread(
                mint_tokens, idp, aud=aud, first=0, count=2 * SUBJECTS, path=warmup
            )
            await self._tokens("warm-up", warmup, 16, seconds=60, stop_when=self._provisioned)
            for c in (16, 64):
                tokens = self.workdir / f"returning-c{c}.jwt"
                await asyncio.to_thread(
                    mint_tokens, idp, aud=aud, first=SUBJECTS, count=TOKENS_PER_RUN, path=tokens
                )
                await asyncio.sleep(SETTLE_SECONDS)
                await self.events.checkpoint()
                head = await self.events.head()
                spies = self.spy("idjag-c16") if self.spy is not None and c == 16 else []
                run, exhausted = await self._tokens("ID-JAG returning", tokens, c, self.seconds)
                for spy in spies:
                    await asyncio.to_thread(spy.wait, 60)
                await asyncio.sleep(SETTLE_SECONDS)
                recorded = await self.events.id_jag_credentials_after(head)
                ok_ids = set(run.ok_ids)
                committed = Committed(
                    ok=run.count(200),
                    ids=len(ok_ids),
                    found=len(ok_ids & set(recorded)),
                    new_events=len(recorded),
                    connections=c,
                )
                self.figures.runs[c], self.figures.committed[c] = run, committed
                self.figures.exhausted += exhausted
                log(run.line())
                log("  " + committed.line().replace("registration.created", "ID-JAG credentials"))
        return self.figures

    async def _trust(self, idp: IdentityProvider) -> None:
        body = {"issuer": idp.issuer, "jwks_uri": idp.jwks_url, "algorithms": ["ES256"]}
        status, answer = await asyncio.to_thread(
            http_call,
            "POST",
            self.server.url + "/admin/trusted-issuers",
            json.dumps(body).encode(),
            {"Content-Type": "application/json", "Authorization": f"Bearer {self.admin_token}"},
        )
        if status not in (200, 201):
            raise RuntimeError(f"trusting {idp.issuer} answered {status}: {answer[:300]!r}")
        probe = idp.mint_id_jag(aud=self.server.url, now=datetime.now(UTC), sub="probe")
        body = {
            "type": "identity_assertion",
            "assertion_type": ID_JAG,
            "assertion": probe,
            "requested_credential_type": "api_key",
        }
        status, answer = await asyncio.to_thread(
            http_call,
            "POST",
            self.server.url + "/agent/auth",
            json.dumps(body).encode(),
            {"Content-Type": "application/json"},
        )
        if status != 200:
            raise RuntimeError(f"an ID-JAG registration answered {status}: {answer[:300]!r}")

    async def _provisioned(self) -> bool:
        """Every subject registered once (and the probe): the warm-up has done its work. Read
        from the delegations' read model, not by scanning the log every quarter second."""
        return await self.events.delegations() > SUBJECTS

    async def _tokens(
        self,
        name: str,
        tokens: Path,
        connections: int,
        seconds: float,
        stop_when: StopWhen | None = None,
    ) -> tuple[WrkRun, int]:
        report = tokens.with_suffix(".report")
        run = await self.wrk.run(
            name,
            "id_jag.lua",
            "/agent/auth",
            connections=connections,
            seconds=seconds,
            env={"WRK_TOKENS": str(tokens), "WRK_TOKEN_REPORT": str(report)},
            collect_ids=True,
            stop_when=stop_when,
        )
        _, exhausted, _ = (int(x) for x in report.read_text().split())
        if exhausted and name != "warm-up":
            log(f"  the tokens ran out: {exhausted} requests not sent (the run is void)")
        return run, exhausted if name != "warm-up" else 0

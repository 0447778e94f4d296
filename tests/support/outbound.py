"""The outbound allow-list the test suite's services run with (security finding 7).

The suite's agent provider (tests/support/idp.py) and webhook receivers
(tests/support/set_receiver.py) listen on 127.0.0.1, which a deployment's default refuses to
reach. Every service, process and worker a test starts is given this allow-list explicitly
(`running_service`, `authledger_env`, and the tests that build a PushWorker or JwksCache
themselves); tests/security/test_ssrf_webhook_and_jwks.py runs without it.
"""

from __future__ import annotations

from service.outbound.policy import OutboundPolicy, parse_allow, policy_of

OUTBOUND_ALLOW = "127.0.0.0/8 ::1"  # AUTHLEDGER_OUTBOUND_ALLOW of the test services
LOOPBACK_ALLOWED: tuple[str, ...] = parse_allow(OUTBOUND_ALLOW)
LOOPBACK_POLICY: OutboundPolicy = policy_of(LOOPBACK_ALLOWED)

"""Outbound HTTP to URLs operators registered (webhook receivers, agent providers' JWKS), kept
to public addresses unless `AUTHLEDGER_OUTBOUND_ALLOW` says otherwise (security finding 7)."""

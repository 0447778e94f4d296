"""Revocations as the log tells them: `log` turns credential-ending events into the signed
messages of the revocation feed (`subscriber.wire`), for `GET /admin/revocations` and the
feed's publisher (`workers/revocation_feed.py`) alike."""

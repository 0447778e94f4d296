"""Revocation push: Security Event Tokens (RFC 8417) for webhook subscribers, their sealed
secrets, and delivery over HTTP (RFC 8935)."""

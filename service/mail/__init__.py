"""Claim mail, the service's half: `outbox` queues a claim e-mail inside the append's
transaction and seals its link token; `workers/mailer.py` sends what is queued."""

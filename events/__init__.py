"""The log: event catalogue mechanism, envelope, upcasters and the Postgres event store.

Nothing in this package imports from `projections`, `service` or `workers`.
"""

"""Tenants: one tenant's protocol configuration, and the directory of all."""

"""Secrets and keys: tokens and their hashes, derived and retained keys, signing keys,
personal data sealed per subject, and rotating the secret key."""

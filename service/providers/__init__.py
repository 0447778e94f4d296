"""Agent providers: the trust list, their keys (JWKS), and the JWTs they send us (spec §7, §8)."""

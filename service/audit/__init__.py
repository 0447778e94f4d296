"""Audit: who could do what, when, and why, provably.

- `subjects`: which streams belong to a registration, credential, user, delegation or
  provider, and reading their events up to a bound (a log position and/or an instant);
- `timeline`: every event of a subject with its time, actor, client IP, reason, correlation;
- `as_of`: a subject's state at any instant or log position (which credentials could act);
- `signed`: signed chain checkpoints (compact JWS, EdDSA) and their verification;
- `verify`: the whole log's hash chain and its checkpoints, walked fast, first break named;
- `export` / `check`: a slice as JSON Lines with the proof to check it offline, and the
  checker, which needs nothing but the file (and, optionally, a trusted JWKS).
"""

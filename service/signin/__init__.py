"""Signing a person in on the v0.6 pages (contract V3-V5): the sealed session cookie, CSRF,
the `return_to` rule and OpenID Connect sign-in. Pure or outbound-only: no route (the pages
are service/http's) and no event (a sign-in changes no state of the ledger; the claim it
enables records how the person signed in)."""

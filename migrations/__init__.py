"""Forward-only numbered SQL migrations, applied in order by `authledger migrate`."""

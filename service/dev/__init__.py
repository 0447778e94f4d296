"""`authledger dev`: one process on a data folder, embedded Postgres and NATS,
the stack's address card and the loopback mail catcher."""

"""What every worker shares: supervision (`supervise`), sleeping (`sleeper`), stats that tests
can await (`watch`) and, for the two JetStream publishers, `jetstream`. Each worker module
keeps only its own rule."""

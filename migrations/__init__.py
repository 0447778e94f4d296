"""Forward-only numbered SQL migrations, the runner that applies them in order (`authledger
migrate`, runner.py), and the owner and runtime database roles (roles.py)."""

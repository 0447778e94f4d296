"""How a process runs: the serve/worker/migrate loops, the `serve --workers N` parent,
the HTTP job and its server, the listening socket and what a running process holds."""

"""The `flowplan` client commands: a gRPC client of a running daemon (`flowplan.v1`).

- `connection`: where the daemon is and how to reach it (address, bearer token, TLS,
  deadlines), and what a failed call means for the exit code;
- `render`: text for people (tables, the coloured run graph, watch lines, the backfill
  progress bar), pure functions of the messages;
- `commands`: the subcommands and their options, one handler per command, calling the
  daemon through `api`;
- `api`: the public Python client (`Client`, `AsyncClient`), also importable as
  `flowplan.client` (docs/client.md).
"""

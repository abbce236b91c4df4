"""The daemon: `flowplan serve`, the gRPC API over the engine and the scheduler."""

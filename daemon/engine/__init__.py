"""The engine: everything that happens to a run after it is created."""

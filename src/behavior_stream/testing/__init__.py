"""Real parts shared by tests, the demo and benchmarks: the embedded broker, worker processes,
replay, hostile records."""

"""behavior-stream's stream layer: the Faust app, worker, broker, replay, API and CLI."""

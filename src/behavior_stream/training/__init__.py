"""Training the sequence model: config, batching, objective, the train loop."""

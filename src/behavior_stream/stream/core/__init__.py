"""The runtime-free processing core: `process_batch` and what it works on (no Kafka, no Faust)."""

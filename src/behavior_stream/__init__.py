"""behavior-stream: real-time user representations and recommendations from e-commerce behavior events.

Subpackages are layers; each imports only those below it (contracts in pyproject, checked by
`make lint`): cli, testing > stream.runtime > stream.commit > stream.core > training >
evaluation > nn > data, simulate > schema."""

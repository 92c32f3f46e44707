"""The exactly-once protocol; read `checkpoint.py` first: its opening comment states the whole
protocol in order (admission, gap repair, outputs -> state -> fences, offset acks, the
monotonic store) and its `Committer` writes each batch that way. The other modules are its
parts: `sender` (the batch producer), `watermarks` (fences' watermarks, gap repair), `store`
(the monotonic memory store) and `partitioning` (Kafka's key -> partition)."""

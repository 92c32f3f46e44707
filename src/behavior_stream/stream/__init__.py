"""The stream processor: a runtime-free core, the exactly-once commit protocol, and the Faust runtime."""

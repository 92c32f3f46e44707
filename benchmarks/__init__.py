"""Benchmarks of behavior-stream: throughput, latency, memory and training cost, side by side in one run."""

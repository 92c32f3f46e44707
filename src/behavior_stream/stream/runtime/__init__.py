"""The Faust runtime: settings, Kafka clients, the app, agents, web API, Prometheus metrics, worker."""

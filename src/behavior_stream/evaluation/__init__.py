"""The evaluation system: protocol, metrics, baselines, ranking, probes, comparison, report."""

"""Reading a worker's /metrics: parse the Prometheus text format and estimate histogram quantiles."""

from __future__ import annotations

import math
import urllib.request

from prometheus_client.parser import text_string_to_metric_families


def parse_metrics(text: str) -> dict[str, float]:
    """{'name{label="v",...}': value} for every sample (labels sorted, as written by the client)."""
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            out[f"{sample.name}{{{labels}}}" if labels else sample.name] = float(sample.value)
    return out


def scrape(url: str, timeout: float = 5.0) -> dict[str, float]:
    """GET `url` (a worker's /metrics) and parse it."""
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return parse_metrics(resp.read().decode("utf-8"))


def total(metrics: dict[str, float], name: str) -> float:
    """Sum of every series of a metric (all label values)."""
    return sum(v for k, v in metrics.items() if k == name or k.startswith(name + "{"))


def histogram_quantile(metrics: dict[str, float], name: str, q: float) -> float:
    """The q-quantile of a histogram, interpolated within buckets as PromQL's histogram_quantile."""
    buckets: list[tuple[float, float]] = []
    prefix = f"{name}_bucket{{"
    for key, value in metrics.items():
        if key.startswith(prefix):
            bound = key[len(prefix) :].split('le="', 1)[1].split('"', 1)[0]
            buckets.append((math.inf if bound == "+Inf" else float(bound), value))
    buckets.sort()
    if not buckets or buckets[-1][1] == 0:
        return math.nan
    rank = q * buckets[-1][1]
    prev_le, prev_count = 0.0, 0.0
    for le, count in buckets:
        if count >= rank:
            if math.isinf(le):
                return prev_le
            width = count - prev_count
            return prev_le + (le - prev_le) * ((rank - prev_count) / width if width else 0.0)
        prev_le, prev_count = le, count
    return buckets[-1][0]

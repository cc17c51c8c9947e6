"""Prometheus metrics of one app (its own registry, so several apps in one process stay apart)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from icm.results import ModerationResult

CONTENT_TYPE = CONTENT_TYPE_LATEST


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "icm_requests", "HTTP requests answered", ["endpoint", "method", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "icm_request_seconds", "Time to answer a request", ["endpoint"], registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
        )
        self.decisions = Counter(
            "icm_decisions", "Decisions made, by policy", ["policy", "decision"], registry=self.registry
        )
        self.errors = Counter("icm_errors", "Errors answered, by code", ["code"], registry=self.registry)
        self.cache_hits = Counter("icm_cache_hits", "Results served from the store", registry=self.registry)
        self.queue_depth = Gauge("icm_queue_depth", "Requests waiting for a worker", registry=self.registry)
        self.in_flight = Gauge("icm_in_flight", "Requests judged or waiting", registry=self.registry)
        self.batch_size = Histogram(
            "icm_batch_size", "Images judged in one backend call", buckets=(1, 2, 4, 8, 16, 32, 64),
            registry=self.registry,
        )

        self.bank_matches = Counter(
            "icm_bank_matches", "Judged images a known-content bank matched, by bank", ["bank"],
            registry=self.registry,
        )

    def count_bank_matches(self, result: ModerationResult) -> None:
        """Count once per bank that the result says matched (its known-content evidence)."""
        for bank in result.matched_banks:
            self.bank_matches.labels(bank).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)

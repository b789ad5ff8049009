"""Prometheus counters, served at ``GET /metrics``."""

from prometheus_client import Counter, Histogram

TURNS = Counter("ratebot_turns_total", "Inbound messages answered", ["channel"])
DUPLICATE_DELIVERIES = Counter(
    "ratebot_duplicate_deliveries_total", "Re-delivered webhooks answered from memory", ["channel"]
)
RATINGS_CLOSED = Counter(
    "ratebot_ratings_closed_total", "Conversations closed", ["channel", "outcome"]
)
REQUEST_SECONDS = Histogram("ratebot_request_seconds", "HTTP request latency", ["route"])

"""Prometheus counters, served at ``GET /metrics``."""

from prometheus_client import Counter

TURNS = Counter("ratebot_turns_total", "Inbound messages answered", ["channel"])
DUPLICATE_DELIVERIES = Counter(
    "ratebot_duplicate_deliveries_total", "Re-delivered webhooks answered from memory", ["channel"]
)
RATINGS_CLOSED = Counter(
    "ratebot_ratings_closed_total", "Conversations closed", ["channel", "outcome"]
)
CALENDAR_UNCOVERED = Counter(
    "ratebot_calendar_uncovered_days_total",
    "Working-day questions about a year China's holiday calendar does not cover yet (weekends only)",
    ["year"],
)

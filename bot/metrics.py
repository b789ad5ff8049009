"""Prometheus counters, served at ``GET /metrics``."""

from prometheus_client import Counter, Gauge

TURNS = Counter("ratebot_turns_total", "Inbound messages answered", ["channel"])
DUPLICATE_DELIVERIES = Counter(
    "ratebot_duplicate_deliveries_total", "Re-delivered webhooks answered from memory", ["channel"]
)
RATINGS_CLOSED = Counter(
    "ratebot_ratings_closed_total", "Conversations closed", ["channel", "outcome"]
)
CALENDAR_UNCOVERED = Counter(
    "ratebot_calendar_uncovered_days_total",
    "Working-day questions about a year China's holiday calendar does not cover yet"
    " (weekends only)",
    ["year"],
)

# The closed loop on bad reviews.
TICKETS_OPENED = Counter("ratebot_tickets_opened_total", "Tickets opened by bad reviews", ["tier"])
TICKETS_CLOSED = Counter(
    "ratebot_tickets_closed_total",
    "Tickets closed, by how (rerated, window, appeal_upheld)",
    ["outcome"],
)
TICKETS_OVERDUE = Gauge(
    "ratebot_tickets_overdue", "Tickets past their deadline without an answer (the worker counts)"
)
ESCALATIONS = Counter("ratebot_ticket_escalations_total", "Overdue tickets escalated")
CONTACT_REVEALS = Counter(
    "ratebot_contact_reveals_total", "Citizens' phone numbers shown for a callback"
)
RERATINGS = Counter("ratebot_reratings_total", "Re-ratings that closed a ticket", ["level"])
APPEALS = Counter("ratebot_appeals_decided_total", "Appeals decided", ["decision"])
FLAGS = Counter("ratebot_flags_total", "Ratings flagged by a fraud rule", ["rule"])
RESULT_DAYS_RECOUNTED = Counter(
    "ratebot_result_days_recounted_total", "Days whose rollups the worker counted again"
)

# The push upward (上报).
UPSTREAM_SENT = Counter("ratebot_upstream_sent_total", "Outbox items the upstream platform took")
UPSTREAM_FAILURES = Counter(
    "ratebot_upstream_failures_total", "Failed pushes (an error, a timeout, a status not 2xx)"
)
UPSTREAM_DEAD = Gauge(
    "ratebot_upstream_dead", "Outbox items dead after their last attempt (the worker counts)"
)

"""Where a server's CPU goes: a summary of py-spy collapsed stacks (``bench/webhook.py
--profile-dir DIR`` writes them; py-spy is not a ratebot dependency: ``pip install py-spy``).

    .venv/bin/python -m bench.hotspots DIR/ratebot-50.collapsed [--top 25]

Prints the share of samples per part of a turn (first matching bucket wins, in the order
below), then the lines of ratebot's own code with the most samples under them (inclusive), then
the functions with the most samples of their own (self). Samples are of threads holding the GIL,
so the shares are of the Python CPU time, not of waiting.
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

# (bucket, substrings of a frame): a sample goes to the first bucket one of whose substrings
# appears in any frame of its stack.
BUCKETS: list[tuple[str, tuple[str, ...]]] = [
    ("database transaction (Conversations.persist: ORM + psycopg)", ("Conversations.persist",)),
    (
        "threadpool hand-off (run_in_threadpool, anyio)",
        ("run_in_threadpool", "anyio/", "Thread._bootstrap"),
    ),
    (
        "conversation store (Redis scripts, redis-py)",
        ("storage/redis.py", "storage/base.py", "redis/"),
    ),
    ("session JSON <-> pydantic", ("load_session", "model_dump", "model_validate", "Turn.save")),
    ("dialog engine (engine.resume)", ("dialogs/engine.py",)),
    ("reply text + TwiML (render_text, twiml)", ("channels/sms.py", "twilio/twiml")),
    ("Twilio signature check", ("signature_is_valid", "request_validator")),
    ("form parsing (request.form)", ("Request.form", "_get_form", "python_multipart", "multipart")),
    ("contact hash, phone normalization", ("contact_hash", "normalize_phone", "bot/privacy.py")),
    ("uuid4", ("uuid4",)),
    ("prometheus metrics", ("prometheus_client",)),
    ("bare endpoint body", ("bare_app.py",)),
    (
        "FastAPI / Starlette / uvicorn request handling",
        ("run_asgi", "starlette/", "fastapi/", "uvicorn/protocols"),
    ),
]
OWN_CODE = ("bot/", "dialogs/", "storage/", "channels/", "locales/", "bench/")


def summarize(path: Path, top: int) -> None:
    total = 0
    buckets: Counter[str] = Counter()
    own: Counter[str] = Counter()
    self_time: Counter[str] = Counter()
    for line in path.read_text(errors="replace").splitlines():
        if not line.strip():
            continue
        stack, _, count = line.rpartition(" ")
        n = int(count)
        frames = [f for f in stack.split(";") if f]
        total += n
        if frames:
            self_time[frames[-1]] += n
        for name, needles in BUCKETS:
            if any(needle in frame for frame in frames for needle in needles):
                buckets[name] += n
                break
        else:
            buckets["other (event loop, I/O, interpreter)"] += n
        for frame in set(frames):
            where = frame.rsplit("(", 1)[-1]
            if where.startswith(OWN_CODE):
                own[frame] += n
    if not total:
        print(f"{path}: no samples")
        return
    print(f"{path}: {total} samples")
    print("\nby part of the turn:")
    for name, n in buckets.most_common():
        print(f"  {100 * n / total:5.1f}%  {name}")
    print(f"\nratebot code, inclusive (top {top}):")
    for frame, n in own.most_common(top):
        print(f"  {100 * n / total:5.1f}%  {frame}")
    print(f"\nself time (top {top}):")
    for frame, n in self_time.most_common(top):
        print(f"  {100 * n / total:5.1f}%  {frame}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    for path in args.files:
        summarize(path, args.top)
        print()


if __name__ == "__main__":
    main()

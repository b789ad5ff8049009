"""How fast the small commands start: ``ratebot --help`` and ``ratebot apikey create`` on an
up-to-date SQLite file, wall time of the whole process, best and median of ``--runs``.

    .venv/bin/python -m bench.startup --runs 9 --before cbdd53c

``--before REV`` measures that commit's tree too (``git archive`` into a temporary directory,
imported ahead of the working tree), in turns with this one so both see the same machine.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COMMANDS = {
    "--help": ["--help"],
    "apikey create": ["apikey", "create", "--role", "platform", "--name", "bench"],
}


def tree_of(revision: str, into: Path) -> Path:
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", revision], check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def once(argv: list[str], env: dict[str, str], cwd: Path) -> float:
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "bot.cli", *argv],
        env=env,
        cwd=cwd,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--before", metavar="REV", help="also measure this commit's tree")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        env = {k: v for k, v in os.environ.items() if not k.startswith("RATEBOT_")}
        env["RATEBOT_DATABASE_URL"] = f"sqlite:///{work}/bench.db"
        trees = {"working tree": env}
        if args.before:
            old = tree_of(args.before, Path(tempfile.mkdtemp(dir=work)))
            trees = {args.before: {**env, "PYTHONPATH": str(old)}, **trees}
        subprocess.run(
            [sys.executable, "-m", "bot.cli", "db", "upgrade"], env=env, cwd=work, check=True
        )
        times: dict[tuple[str, str], list[float]] = {}
        for _ in range(args.runs):
            for tree, tree_env in trees.items():
                for name, argv in COMMANDS.items():
                    times.setdefault((tree, name), []).append(once(argv, tree_env, work))
    load = os.getloadavg()[0]
    print(f"{args.runs} runs each, load average {load:.1f} on {os.cpu_count()} cores")
    for (tree, name), runs in times.items():
        print(
            f"{tree:>14}  {name:<14} best {min(runs) * 1000:6.0f} ms"
            f"  median {statistics.median(runs) * 1000:6.0f} ms"
        )


if __name__ == "__main__":
    main()

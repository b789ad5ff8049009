"""``ratebot --help``, ``--version``, and what a small command loads: every command's help shows
its defaults and an example, and the commands that need no provider start without loading one
(aiogram alone took 2.5 s of every command's start; docs/benchmarks.md, "Command start-up")."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest

from bot import version
from bot.cli import EXAMPLES, build_parser, main
from tests.bot.test_cli import clean_env

# What a small command must not load: the providers, the web stack, Alembic when the schema is
# up to date; and --help, not even the records (SQLAlchemy brings asyncio and importlib.metadata).
HEAVY = (
    "aiogram",
    "wechatpy",
    "twilio",
    "fastapi",
    "uvicorn",
    "httpx",
    "jinja2",
    "argon2",
    "alembic",
)
RECORDS = ("sqlmodel", "sqlalchemy", "pydantic", "asyncio", "importlib.metadata")


def commands(parser: argparse.ArgumentParser, words: tuple[str, ...] = ()):  # type: ignore[no-untyped-def]
    """(words, parser) of the parser and every command under it."""
    yield words, parser
    for action in parser._actions:  # argparse keeps its commands there, and nowhere public
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from commands(sub, (*words, name))


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out == f"ratebot {version()}\n"
    assert version() == "0.1.0"  # pyproject.toml's, as installed


def test_every_help_shows_the_defaults_and_an_example() -> None:
    found = dict(commands(build_parser()))
    assert set(EXAMPLES) == {" ".join(words) for words in found}  # one example each, no stale one
    for words, parser in found.items():
        text = parser.format_help()
        example = EXAMPLES[" ".join(words)]
        assert text.rstrip().endswith(f"example:\n  {example}"), text
        assert example.startswith("ratebot " + " ".join(words)), example
        parser.parse_args(example.split()[1 + len(words) :])  # the example is a valid command
        for action in parser._actions:
            if action.default not in (None, False, argparse.SUPPRESS) and not action.required:
                assert f"(default: {action.default})" in " ".join(text.split()), (words, action)
    assert "(default: 127.0.0.1)" in found[("serve",)].format_help()


def test_a_small_command_loads_no_provider_library(tmp_path: Path) -> None:
    """``--help`` loads neither the records nor a provider; ``apikey create`` on an up-to-date
    database loads the records (SQLModel) and nothing of :data:`HEAVY`. One interpreter of its
    own, after the schema was made by another."""
    env = clean_env(RATEBOT_DATABASE_URL=f"sqlite:///{tmp_path}/probe.db")
    subprocess.run(
        [sys.executable, "-m", "bot.cli", "db", "upgrade"], cwd=tmp_path, env=env, check=True
    )
    probe = f"""
import json, sys
from bot.cli import main
loaded = lambda: sorted(name for name in {(*HEAVY, *RECORDS)!r} if name in sys.modules)
try:
    main(["--help"])
except SystemExit:
    pass
after_help = loaded()
main(["apikey", "create", "--role", "platform", "--name", "probe"])
print(json.dumps([after_help, loaded()]))
"""
    done = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    after_help, after_create = json.loads(done.stdout.strip().splitlines()[-1])
    assert after_help == []
    assert after_create == sorted(RECORDS)

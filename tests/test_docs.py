"""The documentation keeps up with the code: every endpoint is in docs/http.md and every setting
in docs/configuration.md and .env.example, every relative link resolves, and no user page
points at an issue number (readers have no tracker; the pages say what is, not what was asked).
"""

from __future__ import annotations

import os
import re
from functools import cache
from pathlib import Path

import pytest
from fastapi.routing import iter_route_contexts
from starlette.routing import Mount

from bot.app import create_app
from bot.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
METHODS = "GET|POST|PUT|PATCH|DELETE"
# `GET /path?query`, `GET /a`, `POST /a` and `GET, POST /a` as the reference writes them.
ENDPOINT = re.compile(rf"`((?:{METHODS})(?:, (?:{METHODS}))*) (/[^`\s?]*)[^`]*`")
PARAM = re.compile(r"\{[^}]*\}")
LINK = re.compile(r"\]\(([^)\s]+)\)")
ISSUE = re.compile(r"(?i)\bissues?\s*#?\d+|(?:^|(?<=[\s(]))#\d+\b")


def shape(path: str) -> str:
    """``/api/v1/tickets/{ticket_id}`` and ``/api/v1/tickets/{id}`` are the same endpoint."""
    return PARAM.sub("{}", path)


@cache
def served() -> tuple[frozenset[tuple[str, str]], frozenset[str]]:
    """(method, path shape) of every route of an app with every optional router on, and the
    prefixes of its mounts (static files)."""
    app = create_app(
        Settings(  # type: ignore[call-arg]
            _env_file=None, database_url="sqlite://", voice_audio_dir=ROOT / "docs"
        )
    )
    routes: set[tuple[str, str]] = set()
    mounts: set[str] = set()
    for context in iter_route_contexts(app.routes):
        path = context.path or ""
        if isinstance(context.original_route, Mount):
            mounts.add(path)
            continue
        for method in context.methods or ():
            if method != "HEAD":
                routes.add((method, shape(path)))
    return frozenset(routes), frozenset(mounts)


def documented() -> set[tuple[str, str]]:
    text = (ROOT / "docs" / "http.md").read_text(encoding="utf-8")
    return {
        (method, shape(path))
        for methods, path in ENDPOINT.findall(text)
        for method in methods.split(", ")
    }


def test_every_endpoint_is_in_the_http_reference() -> None:
    routes, mounts = served()
    written = documented()
    missing = sorted(
        f"{m} {p}"
        for m, p in routes
        if (m, p) not in written  # a mount is documented by a path under it
    )
    missing += sorted(
        f"GET {prefix}/…"
        for prefix in mounts
        if not any(m == "GET" and p.startswith(prefix + "/") for m, p in written)
    )
    assert not missing, f"docs/http.md lacks: {', '.join(missing)}"


def test_the_http_reference_names_no_endpoint_the_app_lacks() -> None:
    routes, mounts = served()
    stale = sorted(
        f"{m} {p}"
        for m, p in documented()
        if (m, p) not in routes and not any(p.startswith(prefix + "/") for prefix in mounts)
    )
    assert not stale, f"docs/http.md names endpoints the app does not serve: {', '.join(stale)}"


SETTINGS = sorted(f"RATEBOT_{name.upper()}" for name in Settings.model_fields)


@pytest.mark.parametrize("page", ["docs/configuration.md", ".env.example"])
def test_every_setting_is_documented(page: str) -> None:
    text = (ROOT / page).read_text(encoding="utf-8")
    missing = [name for name in SETTINGS if not re.search(rf"\b{name}\b", text)]
    assert not missing, f"{page} lacks {', '.join(missing)}"


def test_the_example_environment_names_only_real_settings() -> None:
    text = (ROOT / ".env.example").read_text(encoding="utf-8")
    named = set(re.findall(r"^#?\s*(RATEBOT_[A-Z0-9_]+)=", text, flags=re.MULTILINE))
    assert named, "no RATEBOT_ variable in .env.example"
    assert not named - set(SETTINGS), f"not settings: {', '.join(sorted(named - set(SETTINGS)))}"


def test_the_example_environment_loads_as_it_is(tmp_path: Path) -> None:
    """Copied to .env unchanged, the example gives the defaults."""
    env = tmp_path / ".env"
    env.write_text((ROOT / ".env.example").read_text(encoding="utf-8"), encoding="utf-8")
    loaded = Settings(_env_file=env)  # type: ignore[call-arg]
    assert loaded == Settings(_env_file=None)  # type: ignore[call-arg]


def test_the_example_shows_the_real_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each value the example shows, uncommented, is the setting's default (the files and
    directories show an example path instead: their defaults are the shipped files)."""
    shown = dict(
        re.findall(
            r"^# (RATEBOT_[A-Z0-9_]+)=(.+)$",
            (ROOT / ".env.example").read_text(encoding="utf-8"),
            flags=re.MULTILINE,
        )
    )
    examples = {n for n, v in shown.items() if v.startswith("/etc/ratebot/")}
    assert examples == {
        "RATEBOT_SURVEY_PATH",
        "RATEBOT_VOICE_AUDIO_DIR",
        "RATEBOT_HALLS_FILE",
        "RATEBOT_TICKETS_FILE",
        "RATEBOT_RESULTS_FILE",
    }
    for name in list(os.environ):
        if name.startswith("RATEBOT_"):
            monkeypatch.delenv(name)
    env = tmp_path / ".env"
    env.write_text(
        "".join(f"{n}={v}\n" for n, v in shown.items() if n not in examples), encoding="utf-8"
    )
    assert Settings(_env_file=env) == Settings(_env_file=None)  # type: ignore[call-arg]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(page: Path) -> None:
    text = page.read_text(encoding="utf-8")
    broken = []
    for target in LINK.findall(text):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
            continue  # a URL, or an anchor in the same page
        path = target.split("#", 1)[0]
        if not (page.parent / path).exists():
            broken.append(target)
    assert not broken, f"{page.relative_to(ROOT)}: broken links {', '.join(broken)}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_issue_numbers_in_user_documentation(page: Path) -> None:
    found = [m.group(0) for m in ISSUE.finditer(page.read_text(encoding="utf-8"))]
    assert not found, f"{page.relative_to(ROOT)} mentions {', '.join(found)}"

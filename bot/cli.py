"""The ``ratebot`` command."""

from __future__ import annotations

import argparse
import gc
import os
import signal
import sys
from collections.abc import Callable, Sequence
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, get_args
from uuid import uuid4

import locales

# Nothing heavy is imported here: each command imports what it needs, so that ``ratebot --help``
# and the small commands start in a fraction of a second (the providers' libraries alone take
# seconds; docs/benchmarks.md, "Command start-up"). tests/bot/test_cli_start.py checks it.
if TYPE_CHECKING:
    import httpx

    from bot.results.stats import Period
    from bot.settings import Settings


# How old the worker's heartbeat may be before ``ratebot worker --check`` calls it stuck: a pass
# may send a few hundred messages and pushes (a push may take its whole timeout), so minutes,
# not the 5 s between passes.
HEARTBEAT_MAX_AGE = 120.0


def _settings() -> Settings:
    from pydantic import ValidationError

    from bot.settings import Settings

    try:
        return Settings()
    except ValidationError as exc:
        # Name the variable and the reason, never the value: it may be a secret.
        problems = "\n".join(
            f"  RATEBOT_{'_'.join(str(part) for part in error['loc']).upper()}: {error['msg']}"
            if error["loc"]
            else f"  {error['msg']}"
            for error in exc.errors(include_input=False, include_url=False)
        )
        sys.exit(f"ratebot: bad configuration:\n{problems}")


def _embedded_upgrade(settings: Settings) -> None:
    """On the embedded SQLite default, commands bring the schema up to date themselves; a
    PostgreSQL deployment runs ``ratebot db upgrade`` once per release instead."""
    from storage import db as database

    if database.normalize_url(settings.database_url).startswith("sqlite"):
        database.upgrade_if_behind(settings.database_url)


def cmd_serve(args: argparse.Namespace) -> None:
    import uvicorn

    from bot.web.limits import SERVER_LIMITS

    settings = _settings()
    _embedded_upgrade(settings)
    if args.demo:
        _serve_demo(args, settings)
        return
    uvicorn.run(
        "bot.app:served_app",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_level=settings.log_level.lower(),
        access_log=settings.access_log,
        proxy_headers=True,
        **SERVER_LIMITS,
    )


def _serve_demo(args: argparse.Namespace, settings: Settings) -> None:
    """``serve --demo``: one process (the demo's conversations live in its memory), with what a
    first try needs made on its first start (bot/demo.py)."""
    import uvicorn

    from bot.web.limits import SERVER_LIMITS

    if settings.environment != "development":
        sys.exit("ratebot serve --demo: only with RATEBOT_ENVIRONMENT=development (it makes an "
                 "admin account and turns the quiet hours off)")  # fmt: skip
    if args.workers != 1:
        sys.exit("ratebot serve --demo: one worker only (the demo's conversations live in its "
                 "memory)")  # fmt: skip
    if "public_url" not in settings.model_fields_set and (args.host, args.port) != (
        "127.0.0.1",
        8000,
    ):
        # Where this server answers, for the signatures and the links (the factory reads it).
        os.environ["RATEBOT_PUBLIC_URL"] = f"http://{args.host}:{args.port}"
    uvicorn.run(
        "bot.demo:served_demo",  # by name, as serve does: the CLI imports no router
        factory=True,
        host=args.host,
        port=args.port,
        log_level=settings.log_level.lower(),
        access_log=settings.access_log,
        proxy_headers=True,
        **SERVER_LIMITS,
    )


def cmd_worker(args: argparse.Namespace) -> None:
    if args.check:
        _check_heartbeat(args.heartbeat, args.max_age)
        return
    import asyncio

    from bot import worker
    from bot.runtime import Runtime

    settings = _settings()
    _embedded_upgrade(settings)

    async def main() -> None:
        rt = Runtime.from_settings(settings)
        gc.collect()
        gc.freeze()  # as bot.app.served_app does: full collections skip the start-up objects
        stop = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            asyncio.get_running_loop().add_signal_handler(sig, stop.set)
        try:
            await worker.run_forever(rt, stop, args.heartbeat)
        finally:
            await rt.close()

    asyncio.run(main())


def _check_heartbeat(heartbeat: Path | None, max_age: float) -> None:
    """Exit 0 when the worker finished a pass without an error within ``max_age`` seconds: a
    container's health check. Reads only the file's time, so it starts in a blink (importing
    the worker would take seconds)."""
    import time

    if heartbeat is None:
        sys.exit("ratebot: --check needs --heartbeat FILE (the one the worker touches)")
    try:
        age = time.time() - heartbeat.stat().st_mtime
    except FileNotFoundError:
        sys.exit(f"ratebot: no heartbeat at {heartbeat}: the worker has not finished a pass yet")
    if age > max_age:
        sys.exit(
            f"ratebot: the worker's last good pass was {age:.0f} s ago (more than {max_age:.0f} s)"
        )
    print(f"worker alive: last good pass {age:.0f} s ago")


def cmd_db_upgrade(args: argparse.Namespace) -> None:
    from storage import db as database

    settings = _settings()
    database.upgrade(settings.database_url, args.revision)
    print(f"database at revision {args.revision}")


def cmd_stats_rebuild(args: argparse.Namespace) -> None:
    from bot.results import rollups
    from storage import db as database

    settings = _settings()
    engine = database.create_db_engine(settings.database_url)
    try:
        days = rollups.rebuild(engine, settings, args.since, args.until)
    finally:
        engine.dispose()
    print(f"recounted {days} day(s) from the raw ratings")


# The report's argument types import the results lazily: every other command starts faster.
def _report_month(text: str) -> Period:
    from bot.results.report import month
    from bot.results.stats import BadPeriod

    try:
        return month(text)
    except BadPeriod as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _rank_by(text: str) -> str:
    from bot.results.stats import RankBy

    if text not in get_args(RankBy):
        raise argparse.ArgumentTypeError(f"{text!r}: choose from {', '.join(get_args(RankBy))}")
    return text


def _report_file(text: str) -> Path:
    from bot.results.report_files import SUFFIXES

    path = Path(text)
    if path.suffix.lower() not in SUFFIXES:
        raise argparse.ArgumentTypeError(
            f"{text!r}: the report is written as {' or '.join(SUFFIXES)}"
        )
    return path


def cmd_report(args: argparse.Namespace) -> None:
    """Write the month's report for supervisors (ranking, trend, tickets, appeals, flags)."""
    from bot.results import report, report_files
    from bot.results.scoring import BadResultsFile, results_rules
    from storage import db as database
    from storage.models import utcnow

    settings = _settings()
    _embedded_upgrade(settings)
    engine = database.create_db_engine(settings.database_url)
    try:
        with engine.connect() as conn:
            month_report = report.monthly_report(
                conn,
                period=args.period,
                by=args.by,
                rules=results_rules(settings.results_file),
                zone=settings.timezone,
                now=utcnow(),
            )
        report_files.write(month_report, args.out, args.lang or settings.default_locale)
    except (BadResultsFile, OSError) as exc:
        sys.exit(f"ratebot: {exc}")
    finally:
        engine.dispose()
    print(f"report of {args.period.label} written to {args.out}")


def cmd_apikey_create(args: argparse.Namespace) -> None:
    from sqlmodel import Session as DbSession

    from bot.web.keys import create_api_key
    from storage import db as database
    from storage.models import utcnow

    settings = _settings()
    _embedded_upgrade(settings)
    engine = database.create_db_engine(settings.database_url)
    try:
        with DbSession(engine) as db:
            key = create_api_key(
                db,
                role=args.role,
                name=args.name,
                now=utcnow(),
                halls=args.hall or (),
                departments=args.department or (),
            )
    except ValueError as exc:
        raise SystemExit(f"ratebot apikey create: {exc}") from exc
    finally:
        engine.dispose()
    print(f"API key for {args.name!r} (role {args.role}); it is shown only this once:")
    print(key)


def cmd_apikey_list(args: argparse.Namespace) -> None:
    """Every key with its role and limits, oldest first; never the key itself."""
    from bot.web.keys import list_api_keys
    from storage import db as database

    settings = _settings()
    _embedded_upgrade(settings)
    engine = database.create_db_engine(settings.database_url)
    try:
        with engine.connect() as conn:
            keys = list_api_keys(conn)
    finally:
        engine.dispose()
    if not keys:
        print("no API keys; create one: ratebot apikey create --role platform --name NAME")
        return
    rows = [("ID", "NAME", "ROLE", "HALLS/DEPARTMENTS", "CREATED", "REVOKED")]
    rows += [
        (
            str(k.id),
            k.name,
            k.role,
            ", ".join(k.halls or k.departments) or "-",
            _when(k.created_at),
            _when(k.revoked_at),
        )
        for k in keys
    ]
    widths = [max(_width(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for *cells, last in rows:
        padded = (c + " " * (w - _width(c)) for c, w in zip(cells, widths, strict=True))
        print("  ".join([*padded, last]))


def _width(text: str) -> int:
    """Columns ``text`` takes in a terminal: a Chinese character takes two."""
    import unicodedata

    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def _when(moment: datetime | None) -> str:
    """A time as the operator reads it: UTC, to the minute."""
    return moment.strftime("%Y-%m-%d %H:%M UTC") if moment is not None else "-"


def cmd_apikey_revoke(args: argparse.Namespace) -> None:
    from bot.web.keys import ApiKeyError, revoke_api_key
    from storage import db as database
    from storage.models import utcnow

    settings = _settings()
    _embedded_upgrade(settings)
    engine = database.create_db_engine(settings.database_url)
    try:
        with engine.begin() as conn:
            key = revoke_api_key(conn, args.key, now=utcnow())
    except ApiKeyError as exc:
        raise SystemExit(f"ratebot apikey revoke: {exc}") from exc
    finally:
        engine.dispose()
    print(f"API key {key.name!r} (id {key.id}, role {key.role}) revoked; it no longer works")


def _new_password(args: argparse.Namespace) -> str:
    """The password from one line of stdin (``--password-stdin``), else asked twice."""
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    import getpass

    password = getpass.getpass("password: ")
    if getpass.getpass("again: ") != password:
        raise SystemExit(f"ratebot user {args.action}: the two passwords differ")
    return password


def _account_change(args: argparse.Namespace, change: Callable[[Any], object]) -> None:
    """Run ``change(conn)`` in one transaction (the change and its audit row), or exit with
    the reason it was refused."""
    from bot.pages.accounts import AccountError
    from storage import db as database

    settings = _settings()
    _embedded_upgrade(settings)
    engine = database.create_db_engine(settings.database_url)
    try:
        with engine.begin() as conn:
            change(conn)
    except AccountError as exc:
        raise SystemExit(f"ratebot user {args.action}: {exc}") from exc
    finally:
        engine.dispose()


def cmd_user_create(args: argparse.Namespace) -> None:
    from bot.pages.accounts import create_user
    from storage.models import utcnow

    password = _new_password(args)
    _account_change(
        args,
        lambda conn: create_user(
            conn,
            name=args.name,
            role=args.role,
            password=password,
            departments=args.department or (),
            now=utcnow(),
        ),
    )
    print(f"account {args.name!r} created (role {args.role}); it signs in at /login")


def cmd_user_disable(args: argparse.Namespace) -> None:
    from bot.pages.accounts import disable_user
    from storage.models import utcnow

    _account_change(args, lambda conn: disable_user(conn, name=args.name, now=utcnow()))
    print(f"account {args.name!r} disabled; its sessions have ended")


def cmd_user_reset_password(args: argparse.Namespace) -> None:
    from bot.pages.accounts import reset_password
    from storage.models import utcnow

    password = _new_password(args)
    _account_change(
        args,
        lambda conn: reset_password(conn, name=args.name, password=password, now=utcnow()),
    )
    print(f"password of {args.name!r} changed; its sessions have ended")


def cmd_chat(args: argparse.Namespace) -> None:
    """Talk to the real engine through a channel's renderer, with no provider account."""
    from channels.sms import render_text
    from channels.telegram import render_terminal
    from channels.voice import REPEAT_KEY
    from channels.voice import render_terminal as voice_render
    from channels.wechat import render as wechat_render
    from dialogs import engine
    from dialogs.events import Answered, InboundEvent, OptedIn, OptedOut, RatingClosed, Say
    from dialogs.survey import load_survey
    from locales import ids, normalize_locale
    from storage.models import utcnow

    settings = _settings()
    survey = load_survey(settings.survey_path)
    locale = normalize_locale(args.locale, settings.default_locale)
    renderers = {
        "sms": render_text,
        "telegram": render_terminal,
        "wechat": wechat_render,
        "voice": voice_render,
    }
    render = renderers[args.channel]
    session = None
    print(f"(ratebot chat: {args.channel}, {locale}; type your replies, Ctrl-D to quit)")
    if args.record_no or args.channel == "voice":  # a call: ratebot speaks first
        sprint = engine.start(
            survey, session_id=str(uuid4()), now=utcnow(), locale=locale, record_no=args.record_no
        )
        session = sprint.session
        welcome = [Say(ids.VOICE_WELCOME)] if args.channel == "voice" else []
        print(render([*welcome, *sprint.events], locale))
    while True:
        try:
            line = input("> ")
        except EOFError:
            print()
            return
        event = InboundEvent(channel=args.channel, sender="terminal", text=line, locale=locale)
        if args.channel == "voice" and line.strip() == REPEAT_KEY and session is not None:
            sprint = engine.ask(survey, session)
        else:
            sprint = engine.resume(
                survey, session, event, now=utcnow(), new_session_id=str(uuid4())
            )
        known = sprint.session or session
        session = sprint.session
        # What was read from this answer, under it; then what ratebot says next.
        for e in sprint.events:
            if isinstance(e, Answered):
                print(f"  · {e.field} = {e.value!r}")
            elif isinstance(e, RatingClosed):
                answers = known.answers if known else {}
                print(f"  · rating {e.outcome} ({e.reason}): {answers}")
            elif isinstance(e, OptedOut | OptedIn):
                print(f"  · {type(e).__name__}")
        text = render(sprint.events, known.locale if known else locale)
        if text:
            print(text)


def cmd_call(args: argparse.Namespace) -> None:
    """Call a case's citizen now (inside calling hours) to rate it by phone — or, for a bad
    review whose citizen asked for one, to follow it up (回访)."""
    import asyncio

    from sqlmodel import Session as DbSession

    from bot.cases import calls
    from bot.runtime import Runtime
    from storage.models import CallAttempt, utcnow

    settings = _settings()
    _embedded_upgrade(settings)
    rt = Runtime.from_settings(settings)
    try:
        attempt_id = calls.call_case(rt, args.record_no, utcnow())
        delivery = calls.place(rt, attempt_id)
        with DbSession(rt.db) as db:
            attempt = db.get_one(CallAttempt, attempt_id)
    except calls.CannotCall as exc:
        sys.exit(f"ratebot: {exc}")
    finally:
        asyncio.run(rt.close())
    if delivery is not None:
        print(f"call {delivery.status}" + (f": {delivery.error}" if delivery.error else ""))
    elif attempt.status == "scheduled":
        print(f"outside calling hours ({settings.calling_hours}): the worker will place the call")
    else:
        print(f"call {attempt.status}" + (f": {attempt.error}" if attempt.error else ""))


def cmd_simulate_sms(args: argparse.Namespace) -> None:
    """Post one Twilio-signed SMS webhook to a running ratebot, as Twilio would, and print the
    reply's text: for trying a deployment without a phone. A refusal (4xx, 5xx) exits 1 with
    the status and the service's reason."""
    import httpx
    from twilio.request_validator import RequestValidator

    settings = _settings()
    if not settings.twilio_auth_token:
        sys.exit("ratebot: set RATEBOT_TWILIO_AUTH_TOKEN (the same as the running service's)")
    base = (args.url or settings.public_url).rstrip("/")
    url = f"{base}/channels/sms"
    form = {
        "From": args.phone,
        "To": settings.twilio_from or "",
        "Body": args.text,
        "MessageSid": args.sid or f"SM{uuid4().hex}",
    }
    signature = RequestValidator(settings.twilio_auth_token).compute_signature(url, form)
    try:
        response = httpx.post(url, data=form, headers={"X-Twilio-Signature": signature}, timeout=15)
    except httpx.TimeoutException:
        sys.exit(f"ratebot simulate-sms: no answer from {url} within 15 s")
    except httpx.TransportError as exc:
        sys.exit(
            f"ratebot simulate-sms: cannot reach {url} ({type(exc).__name__}): "
            f"is `ratebot serve` running at {base}?"
        )
    if response.is_error:
        hint = ""
        if response.status_code == 403:
            hint = (
                f"\n(the service checks the signature against its own RATEBOT_PUBLIC_URL and "
                f"RATEBOT_TWILIO_AUTH_TOKEN; this signed for {base}: give --url its public URL)"
            )
        sys.exit(
            f"ratebot simulate-sms: {response.status_code} {response.reason_phrase}: "
            f"{_error_detail(response)}{hint}"
        )
    print("\n".join(_twiml_messages(response.text)) or "(no reply)")


def _error_detail(response: httpx.Response) -> str:
    """The service's ``detail``, or the start of whatever else it answered."""
    try:
        detail = response.json()["detail"]
    except (ValueError, KeyError, TypeError):
        return str(response.text[:200]).strip() or "(empty answer)"
    return str(detail)


def _twiml_messages(twiml: str) -> list[str]:
    """The text of each ``<Message>`` of a TwiML answer (the service's own, read as XML)."""
    from xml.etree import ElementTree

    try:
        root = ElementTree.fromstring(twiml)  # noqa: S314 - a ratebot's answer; expat refuses entity bombs
    except ElementTree.ParseError:
        sys.exit(f"ratebot simulate-sms: the answer is not TwiML: {twiml[:200]!r}")
    return ["".join(message.itertext()).strip() for message in root.iter("Message")]


def cmd_telegram_set_webhook(args: argparse.Namespace) -> None:
    """Tell Telegram where to deliver updates: RATEBOT_PUBLIC_URL + /channels/telegram, with
    RATEBOT_TELEGRAM_SECRET as the secret token it sends back in every webhook."""
    import asyncio

    from aiogram.exceptions import TelegramAPIError

    from bot.runtime import telegram_bot
    from channels.telegram import ALLOWED_UPDATES

    settings = _settings()
    if not settings.telegram_token or not settings.telegram_secret:
        sys.exit("ratebot: set RATEBOT_TELEGRAM_TOKEN and RATEBOT_TELEGRAM_SECRET first")
    url = f"{settings.public_url}/channels/telegram"

    async def set_webhook() -> None:
        bot = telegram_bot(settings)
        try:
            await bot.set_webhook(
                url=url,
                secret_token=settings.telegram_secret,
                allowed_updates=ALLOWED_UPDATES,
                drop_pending_updates=args.drop_pending_updates,
            )
        finally:
            await bot.session.close()

    try:
        asyncio.run(set_webhook())
    except TelegramAPIError as exc:  # its message is Telegram's, without the token
        sys.exit(f"ratebot: Telegram refused the webhook: {exc}")
    print(f"Telegram webhook set: {url} (updates: {', '.join(ALLOWED_UPDATES)})")


def cmd_wechat_qrcode(args: argparse.Namespace) -> None:
    """Create a parametric QR code that opens case ``--record-no`` in the official account's
    chat (scene_str = the record number): permanent, or temporary with ``--expire-seconds``."""
    import httpx
    from wechatpy.exceptions import WeChatClientException

    from bot.runtime import wechat_client
    from channels.wechat import case_qrcode

    settings = _settings()
    if not settings.wechat_sending_enabled:
        sys.exit("ratebot: set RATEBOT_WECHAT_APPID and RATEBOT_WECHAT_SECRET first")
    client = wechat_client(settings)
    try:
        code = case_qrcode(client, args.record_no, args.expire_seconds)
    except ValueError as exc:
        sys.exit(f"ratebot: {exc}")
    except WeChatClientException as exc:
        sys.exit(f"ratebot: WeChat refused the QR code: {exc.errcode} {exc.errmsg}")
    finally:
        client.close()
    image_url = code.image_url
    print(f"ticket: {code.ticket}")
    print(f"scan URL: {code.url}")
    print(f"image: {image_url}")
    if code.expire_seconds:
        print(f"expires in {code.expire_seconds} s")
    if args.save:
        response = httpx.get(image_url, timeout=15)
        if response.status_code != 200 or response.headers.get("content-type", "").startswith(
            "application/json"
        ):
            sys.exit(f"ratebot: could not fetch the image ({response.status_code})")
        with open(args.save, "wb") as out:
            out.write(response.content)
        print(f"saved to {args.save}")


# One example per command, shown at the end of its --help (keyed by the words after "ratebot").
EXAMPLES = {
    "": "ratebot serve --demo",
    "serve": "ratebot serve --demo",
    "worker": "ratebot worker --heartbeat /tmp/ratebot-worker.alive",
    "chat": "ratebot chat --locale en --record-no R1",
    "call": "ratebot call --record-no 370200-2026-0001",
    "simulate-sms": "ratebot simulate-sms --phone +8613800138000 5",
    "telegram": "ratebot telegram set-webhook",
    "telegram set-webhook": "ratebot telegram set-webhook --drop-pending-updates",
    "wechat": "ratebot wechat qrcode --record-no 370200-2026-0001 --save case.png",
    "wechat qrcode": "ratebot wechat qrcode --record-no 370200-2026-0001 --save case.png",
    "apikey": "ratebot apikey list",
    "apikey create": "ratebot apikey create --role platform --name queue-system",
    "apikey list": "ratebot apikey list",
    "apikey revoke": "ratebot apikey revoke queue-system",
    "user": "ratebot user create --role admin --name admin",
    "user create": "ratebot user create --role admin --name admin",
    "user disable": "ratebot user disable zhang.san",
    "user reset-password": "ratebot user reset-password admin",
    "stats": "ratebot stats rebuild --from 2026-11-01 --to 2026-11-30",
    "stats rebuild": "ratebot stats rebuild --from 2026-11-01 --to 2026-11-30",
    "report": "ratebot report --period 2026-11 --by department --out report.html",
    "db": "ratebot db upgrade",
    "db upgrade": "ratebot db upgrade",
}


class _Help(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Each option's default after its help (when it has one worth saying), and the example's
    lines as written."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.required or action.default in (None, False, argparse.SUPPRESS):
            return action.help
        return super()._get_help_string(action)


class _Parser(argparse.ArgumentParser):
    """The parser of ``ratebot`` and of each of its commands (argparse makes the commands'
    parsers of the same class): its --help shows the defaults and the command's example."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", _Help)
        super().__init__(*args, **kwargs)
        example = EXAMPLES.get(self.prog.removeprefix("ratebot").strip())
        if self.epilog is None and example is not None:
            self.epilog = f"example:\n  {example}"


class _ShowVersion(argparse.Action):
    """``--version``: argparse's own action takes the text when the parser is built; this one
    looks the version up only when asked."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        kwargs.update(nargs=0, default=argparse.SUPPRESS, help="show the version and exit")
        super().__init__(option_strings, dest, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, *args: Any, **kwargs: Any) -> None:
        from bot import version

        print(f"ratebot {version()}")
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="ratebot", description="Citizens rate government services in conversation."
    )
    parser.add_argument("--version", action=_ShowVersion)
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the web service (and its timer worker)")
    serve.add_argument("--host", default="127.0.0.1", help="the address to listen on")
    serve.add_argument("--port", type=int, default=8000, help="the port to listen on")
    serve.add_argument("--workers", type=int, default=1, help="worker processes (needs Redis)")
    serve.add_argument(
        "--demo",
        action="store_true",
        help="a first try: make an admin account, a platform key, a hall with parking and a "
        "sample case (once; again: say what exists), quiet hours off, then serve",
    )
    serve.set_defaults(func=cmd_serve)

    worker = commands.add_parser("worker", help="run only the timer worker")
    worker.add_argument(
        "--heartbeat",
        type=Path,
        metavar="FILE",
        help="touch FILE after each pass that ran without an error (for --check)",
    )
    worker.add_argument(
        "--check",
        action="store_true",
        help="do not run: exit 0 if the worker's --heartbeat FILE is fresh, 1 if not "
        "(a health check)",
    )
    worker.add_argument(
        "--max-age",
        type=float,
        default=HEARTBEAT_MAX_AGE,
        metavar="SECONDS",
        help="with --check: how old the heartbeat may be (default: %(default)s)",
    )
    worker.set_defaults(func=cmd_worker)

    chat = commands.add_parser("chat", help="try the survey in the terminal")
    chat.add_argument(
        "--channel",
        choices=["sms", "telegram", "wechat", "voice"],
        default="sms",
        help=(
            "whose form to show: SMS text, Telegram's messages with [buttons] (type a value), "
            "WeChat's text reply, or a phone call's prompts (type keys, * to repeat, or words)"
        ),
    )
    chat.add_argument("--locale", help="the citizen's language (default: RATEBOT_DEFAULT_LOCALE)")
    chat.add_argument("--record-no", help="rate this case: ratebot asks first, as an invitation")
    chat.set_defaults(func=cmd_chat)

    call = commands.add_parser("call", help="call a case's citizen to rate it (or a callback)")
    call.add_argument("--record-no", required=True, help="the case (办件编号) to call about")
    call.set_defaults(func=cmd_call)

    simulate = commands.add_parser(
        "simulate-sms",
        help="send a Twilio-signed SMS webhook to a running ratebot and print its reply",
        description="Post one SMS as Twilio would, signed with RATEBOT_TWILIO_AUTH_TOKEN (the "
        "service's), and print the reply's text; exits 1 when the service refuses it.",
    )
    simulate.add_argument(
        "--url",
        help="the service's RATEBOT_PUBLIC_URL, signed for and posted to, when it is not this "
        "shell's (Docker: the URL the container was given) (default: RATEBOT_PUBLIC_URL)",
    )
    simulate.add_argument(
        "--phone", required=True, help="the citizen's number, e.g. +8613812341234"
    )
    simulate.add_argument("--sid", help="MessageSid (repeat one to see a retry answered the same)")
    simulate.add_argument("text", help="the message, e.g. 5 or 5455")
    simulate.set_defaults(func=cmd_simulate_sms)

    telegram = commands.add_parser("telegram", help="the Telegram bot").add_subparsers(
        dest="action", required=True
    )
    set_webhook = telegram.add_parser(
        "set-webhook", help="point the bot's webhook at RATEBOT_PUBLIC_URL/channels/telegram"
    )
    set_webhook.add_argument(
        "--drop-pending-updates", action="store_true", help="discard updates Telegram still holds"
    )
    set_webhook.set_defaults(func=cmd_telegram_set_webhook)

    wechat = commands.add_parser("wechat", help="the WeChat official account").add_subparsers(
        dest="action", required=True
    )
    qrcode = wechat.add_parser("qrcode", help="a QR code that opens a case's rating in WeChat")
    qrcode.add_argument("--record-no", required=True, help="the case number (scene_str)")
    qrcode.add_argument(
        "--expire-seconds",
        type=int,
        help="a temporary code (QR_STR_SCENE, at most 2592000); default: permanent",
    )
    qrcode.add_argument("--save", help="write the code's image to this file")
    qrcode.set_defaults(func=cmd_wechat_qrcode)

    apikey = commands.add_parser("apikey", help="manage API keys").add_subparsers(
        dest="action", required=True
    )
    create = apikey.add_parser("create", help="create a key; it is printed on the last line")
    create.add_argument(
        "--role",
        choices=["platform", "admin", "parking", "department", "supervisor", "reviewer"],
        required=True,
        help="what the key may do",
    )
    create.add_argument("--name", default="unnamed", help="who uses the key (for list, revoke)")
    create.add_argument(
        "--hall",
        action="append",
        metavar="HALL_CODE",
        help="with --role parking: a hall whose vouchers the key may check and redeem (repeat)",
    )
    create.add_argument(
        "--department",
        action="append",
        metavar="NAME",
        help="with --role department: a department whose tickets the key acts on (repeat)",
    )
    create.set_defaults(func=cmd_apikey_create)
    apikey.add_parser(
        "list", help="every key: id, name, role, halls or departments, created, revoked"
    ).set_defaults(func=cmd_apikey_list)
    revoke = apikey.add_parser("revoke", help="revoke a key: it stops working at once (audited)")
    revoke.add_argument(
        "key", metavar="NAME|ID", help="the key's name (one key not yet revoked), or its id"
    )
    revoke.set_defaults(func=cmd_apikey_revoke)

    user = commands.add_parser("user", help="manage staff accounts (the pages)").add_subparsers(
        dest="action", required=True
    )
    user_create = user.add_parser(
        "create",
        help="create an account that signs in at /login",
        description="Create a staff account; the password is asked twice (or read from one "
        "line of stdin).",
    )
    user_create.add_argument(
        "--role",
        choices=["department", "supervisor", "reviewer", "admin"],
        required=True,
        help="which pages the account opens",
    )
    user_create.add_argument("--name", required=True, help="what the person types to sign in")
    user_create.add_argument(
        "--department",
        action="append",
        metavar="NAME",
        help="with --role department: a department whose tickets the account acts on (repeat)",
    )
    user_create.add_argument(
        "--password-stdin", action="store_true", help="read the password from stdin (scripts)"
    )
    user_create.set_defaults(func=cmd_user_create)
    user_disable = user.add_parser("disable", help="disable an account and end its sessions")
    user_disable.add_argument("name", help="the account's name")
    user_disable.set_defaults(func=cmd_user_disable)
    user_reset = user.add_parser(
        "reset-password", help="give an account a new password and end its sessions"
    )
    user_reset.add_argument("name", help="the account's name")
    user_reset.add_argument(
        "--password-stdin", action="store_true", help="read the password from stdin (scripts)"
    )
    user_reset.set_defaults(func=cmd_user_reset_password)

    stats = commands.add_parser("stats", help="the statistics' rollups").add_subparsers(
        dest="action", required=True
    )
    rebuild = stats.add_parser(
        "rebuild",
        help="recount the rollups from the raw ratings",
        description="Recount every day's rollups from the raw ratings (the worker keeps them "
        "up to date by itself; this is for a restore or a change of counting rules). Days are "
        "local to RATEBOT_TIMEZONE.",
    )
    rebuild.add_argument(
        "--from",
        dest="since",
        type=date.fromisoformat,
        help="first local day (default: the first rating's)",
    )
    rebuild.add_argument(
        "--to", dest="until", type=date.fromisoformat, help="last local day (default: today)"
    )
    rebuild.set_defaults(func=cmd_stats_rebuild)

    report = commands.add_parser(
        "report",
        help="write a month's report for supervisors (HTML or XLSX)",
        description="The month's ranking, headline figures and trend, bad reviews and how they "
        "were handled, overdue tickets, appeals and fraud flags, from the statistics' rollups.",
    )
    report.add_argument("--period", type=_report_month, required=True, help="the month: 2026-11")
    report.add_argument(
        "--by",
        type=_rank_by,
        default="department",
        help="what is ranked: department, item, district, hall, window or clerk",
    )
    report.add_argument("--lang", choices=locales.LOCALES, help="default: RATEBOT_DEFAULT_LOCALE")
    report.add_argument("--out", type=_report_file, required=True, help="report.html or .xlsx")
    report.set_defaults(func=cmd_report)

    db = commands.add_parser("db", help="database").add_subparsers(dest="action", required=True)
    upgrade = db.add_parser("upgrade", help="apply migrations")
    upgrade.add_argument("revision", nargs="?", default="head", help="the revision to reach")
    upgrade.set_defaults(func=cmd_db_upgrade)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()

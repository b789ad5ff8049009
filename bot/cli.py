"""The ``ratebot`` command."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Callable, Sequence
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any, get_args
from uuid import uuid4

from pydantic import ValidationError
from sqlmodel import Session as DbSession

import locales
from bot.settings import Settings
from storage import db as database
from storage.models import utcnow

if TYPE_CHECKING:
    from bot.results.stats import Period


def _settings() -> Settings:
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
    if database.normalize_url(settings.database_url).startswith("sqlite"):
        database.upgrade(settings.database_url)


def cmd_serve(args: argparse.Namespace) -> None:
    import uvicorn

    settings = _settings()
    _embedded_upgrade(settings)
    uvicorn.run(
        "bot.app:create_app",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_level=settings.log_level.lower(),
        proxy_headers=True,
    )


def cmd_worker(args: argparse.Namespace) -> None:
    from bot import worker
    from bot.runtime import Runtime

    settings = _settings()
    _embedded_upgrade(settings)

    async def main() -> None:
        rt = Runtime.from_settings(settings)
        stop = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            asyncio.get_running_loop().add_signal_handler(sig, stop.set)
        try:
            await worker.run_forever(rt, stop)
        finally:
            await rt.close()

    asyncio.run(main())


def cmd_db_upgrade(args: argparse.Namespace) -> None:
    settings = _settings()
    database.upgrade(settings.database_url, args.revision)
    print(f"database at revision {args.revision}")


def cmd_stats_rebuild(args: argparse.Namespace) -> None:
    from bot.results import rollups

    settings = _settings()
    days = rollups.rebuild(
        database.create_db_engine(settings.database_url), settings, args.since, args.until
    )
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
    from bot.web.auth import create_api_key

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

    _account_change(args, lambda conn: disable_user(conn, name=args.name, now=utcnow()))
    print(f"account {args.name!r} disabled; its sessions have ended")


def cmd_user_reset_password(args: argparse.Namespace) -> None:
    from bot.pages.accounts import reset_password

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
    if args.record_no or args.channel == "voice":  # a call: ratebot speaks first
        sprint = engine.start(
            survey, session_id=str(uuid4()), now=utcnow(), locale=locale, record_no=args.record_no
        )
        session = sprint.session
        welcome = [Say(ids.VOICE_WELCOME)] if args.channel == "voice" else []
        print(render([*welcome, *sprint.events], locale))
    print(f"(ratebot chat: {args.channel}, {locale}; type your replies, Ctrl-D to quit)")
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
        text = render(sprint.events, known.locale if known else locale)
        if text:
            print(text)
        for e in sprint.events:
            if isinstance(e, Answered):
                print(f"  · {e.field} = {e.value!r}")
            elif isinstance(e, RatingClosed):
                answers = known.answers if known else {}
                print(f"  · rating {e.outcome} ({e.reason}): {answers}")
            elif isinstance(e, OptedOut | OptedIn):
                print(f"  · {type(e).__name__}")


def cmd_call(args: argparse.Namespace) -> None:
    """Call a case's citizen now (inside calling hours) to rate it by phone — or, for a bad
    review whose citizen asked for one, to follow it up (回访)."""
    from bot.cases import calls
    from bot.runtime import Runtime
    from storage.models import CallAttempt

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
    reply: for trying a deployment without a phone."""
    import httpx
    from twilio.request_validator import RequestValidator

    settings = _settings()
    if not settings.twilio_auth_token:
        sys.exit("ratebot: set RATEBOT_TWILIO_AUTH_TOKEN (the same as the running service's)")
    url = f"{settings.public_url}/channels/sms"
    form = {
        "From": args.phone,
        "To": settings.twilio_from or "",
        "Body": args.text,
        "MessageSid": args.sid or f"SM{uuid4().hex}",
    }
    signature = RequestValidator(settings.twilio_auth_token).compute_signature(url, form)
    response = httpx.post(url, data=form, headers={"X-Twilio-Signature": signature}, timeout=15)
    print(response.status_code)
    print(response.text)


def cmd_telegram_set_webhook(args: argparse.Namespace) -> None:
    """Tell Telegram where to deliver updates: RATEBOT_PUBLIC_URL + /channels/telegram, with
    RATEBOT_TELEGRAM_SECRET as the secret token it sends back in every webhook."""
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ratebot", description="Citizens rate government services in conversation."
    )
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the web service (and its timer worker)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=int, default=1)
    serve.set_defaults(func=cmd_serve)

    commands.add_parser("worker", help="run only the timer worker").set_defaults(func=cmd_worker)

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
    chat.add_argument("--locale")
    chat.add_argument("--record-no")
    chat.set_defaults(func=cmd_chat)

    call = commands.add_parser("call", help="call a case's citizen to rate it (or a callback)")
    call.add_argument("--record-no", required=True)
    call.set_defaults(func=cmd_call)

    simulate = commands.add_parser(
        "simulate-sms", help="send a Twilio-signed SMS webhook to RATEBOT_PUBLIC_URL"
    )
    simulate.add_argument(
        "--phone", required=True, help="the citizen's number, e.g. +8613812341234"
    )
    simulate.add_argument("--sid", help="MessageSid (repeat one to see a retry answered the same)")
    simulate.add_argument("text")
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
    )
    create.add_argument("--name", default="unnamed")
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

    user = commands.add_parser("user", help="manage staff accounts (the pages)").add_subparsers(
        dest="action", required=True
    )
    user_create = user.add_parser(
        "create",
        help="create an account that signs in at /login",
        description="Create a staff account; the password is asked twice (or read from one "
        "line of stdin). Example: ratebot user create --role admin --name admin",
    )
    user_create.add_argument(
        "--role", choices=["department", "supervisor", "reviewer", "admin"], required=True
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
    user_disable.add_argument("name")
    user_disable.set_defaults(func=cmd_user_disable)
    user_reset = user.add_parser(
        "reset-password", help="give an account a new password and end its sessions"
    )
    user_reset.add_argument("name")
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
        "local to RATEBOT_TIMEZONE. "
        "Example: ratebot stats rebuild --from 2026-11-01 --to 2026-11-30",
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
        "were handled, overdue tickets, appeals and fraud flags, from the statistics' rollups. "
        "Example: ratebot report --period 2026-11 --by department --out report.html",
    )
    report.add_argument("--period", type=_report_month, required=True, help="the month: 2026-11")
    report.add_argument(
        "--by",
        type=_rank_by,
        default="department",
        help="what is ranked: department (the default), item, district, hall, window or clerk",
    )
    report.add_argument("--lang", choices=locales.LOCALES, help="default: RATEBOT_DEFAULT_LOCALE")
    report.add_argument("--out", type=_report_file, required=True, help="report.html or .xlsx")
    report.set_defaults(func=cmd_report)

    db = commands.add_parser("db", help="database").add_subparsers(dest="action", required=True)
    upgrade = db.add_parser("upgrade", help="apply migrations")
    upgrade.add_argument("revision", nargs="?", default="head")
    upgrade.set_defaults(func=cmd_db_upgrade)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()

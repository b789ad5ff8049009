"""Rating by phone, driven as Twilio drives it: a signed webhook starts the call, and every next
request goes to the ``action`` URL that the TwiML before it gave — keys, speech, silence, ``*``,
recordings, hang-ups and status callbacks. TwiML is parsed and checked; ratings are read back
through the API."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from itertools import count
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlmodel import Session as DbSession
from sqlmodel import col, select

from bot import worker
from storage.models import CallAttempt, Rating
from tests.bot.conftest import (
    PUBLIC_URL,
    TWILIO_FROM,
    FakeClock,
    Harness,
    make_settings,
    serving,
)
from tests.fakes.twilio_api import FakeTwilio
from tests.samples import PHONE

RECORD = "370200-2026-0001"
RECORDING = "https://api.twilio.com/2010-04-01/Accounts/AC0/Recordings/RE"
_calls = count(1)


class Call:
    """One phone call: posts what Twilio posts and follows the TwiML's action URLs."""

    def __init__(self, h: Harness, *, phone: str = PHONE, outbound: bool = False) -> None:
        self.h = h
        # Never one of the fake Twilio's own sids (CA0000…): a call the test places by hand is
        # another call than one the dialer placed.
        self.sid = f"CA{'f' * 8}{next(_calls):024x}"
        self.phone = phone
        self.outbound = outbound
        self.twiml: ET.Element | None = None
        self.action: str | None = None

    def form(self, **fields: str) -> dict[str, str]:
        citizen, line = self.phone, "+8653112345"
        return {
            "CallSid": self.sid,
            "AccountSid": "AC" + "0" * 32,
            "From": line if self.outbound else citizen,
            "To": citizen if self.outbound else line,
            "Direction": "outbound-api" if self.outbound else "inbound",
            "CallStatus": "in-progress",
            **fields,
        }

    async def post(self, url: str, **fields: str) -> httpx.Response:
        assert url.startswith(PUBLIC_URL), url  # absolute, under RATEBOT_PUBLIC_URL
        path = url[len(PUBLIC_URL) :]
        form = self.form(**fields)
        return await self.h.client.post(path, data=form, headers=self.h.signed(path, form))

    async def follow(self, url: str, **fields: str) -> ET.Element:
        response = await self.post(url, **fields)
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("application/xml")
        root = ET.fromstring(response.text)
        assert root.tag == "Response"
        self.twiml = root
        self.action = _next_action(root)
        return root

    async def start(self, query: str = "", **fields: str) -> ET.Element:
        return await self.follow(f"{PUBLIC_URL}/channels/voice{query}", **fields)

    async def press(self, digits: str) -> ET.Element:
        assert self.action, "the call has ended"
        return await self.follow(self.action, Digits=digits)

    async def say(self, speech: str, confidence: str = "0.92") -> ET.Element:
        assert self.action, "the call has ended"
        return await self.follow(self.action, SpeechResult=speech, Confidence=confidence)

    async def silence(self) -> ET.Element:
        assert self.action, "the call has ended"
        return await self.follow(self.action)

    async def record(self, name: str = "1", digits: str = "#") -> ET.Element:
        assert self.twiml is not None and self.twiml.find("Record") is not None
        action = self.twiml.find("Record").get("action")  # type: ignore[union-attr]
        return await self.follow(
            action, RecordingUrl=RECORDING + name, RecordingDuration="7", Digits=digits
        )

    async def record_nothing(self) -> ET.Element:
        """Twilio posts no recording when nothing was said: it goes on to the <Redirect>."""
        assert self.twiml is not None
        redirect = self.twiml.find("Redirect")
        assert redirect is not None and redirect.text
        return await self.follow(redirect.text)

    async def hang_up(self, status: str = "completed", query: str = "") -> None:
        response = await self.post(
            f"{PUBLIC_URL}/channels/voice/status{query}", CallStatus=status, CallDuration="40"
        )
        assert response.status_code == 204, response.text


def _next_action(root: ET.Element) -> str | None:
    for tag in ("Gather", "Record"):
        element = root.find(tag)
        if element is not None:
            return element.get("action")
    return None


def spoken(root: ET.Element) -> str:
    return " ".join(say.text or "" for say in root.iter("Say"))


def gather(root: ET.Element) -> ET.Element:
    element = root.find("Gather")
    assert element is not None, ET.tostring(root, encoding="unicode")
    return element


def ended(root: ET.Element) -> bool:
    return root.find("Hangup") is not None and root.find("Gather") is None


async def rating_of(h: Harness, record_no: str = RECORD) -> dict[str, Any] | None:
    response = await h.client.get(
        f"/api/v1/service-records/{record_no}", headers=h.api_key("platform")
    )
    assert response.status_code == 200, response.text
    return response.json()["rating"]  # type: ignore[no-any-return]


def ratings(h: Harness) -> list[Rating]:
    with DbSession(h.rt.db) as db:
        return list(db.exec(select(Rating)).all())


async def test_keys_walk_the_whole_survey_and_the_comment_is_recorded(harness: Harness) -> None:
    await harness.report()
    call = Call(harness)
    first = await call.start()
    g = gather(first)
    assert g.get("input") == "dtmf speech" and g.get("numDigits") == "1"
    assert g.get("language") == "zh-CN" and g.get("actionOnEmptyResult") == "true"
    assert g.get("action") == f"{PUBLIC_URL}/channels/voice/answer?turn=1"
    words = spoken(first)
    assert "好差评" in words and "总体评价" in words and "非常满意请按5" in words
    assert "重听请按星号键" in words
    assert g.find("Say").get("voice") == "Polly.Zhiyu"  # type: ignore[union-attr]

    assert "服务态度" in spoken(await call.press("5"))
    await call.press("4")
    await call.press("5")
    comment = await call.press("5")
    record = comment.find("Record")
    assert record is not None and record.get("finishOnKey") == "#0"
    assert record.get("maxLength") == "60" and "意见或建议" in spoken(comment)
    assert record.get("transcribeCallback") == f"{PUBLIC_URL}/channels/voice/transcription"

    thanks = await call.record("comment")
    assert ended(thanks) and "感谢" in spoken(thanks)

    rating = await rating_of(harness)
    assert rating is not None and rating["status"] == "complete"
    assert rating["level"] == 5
    assert rating["dimensions"] == {"attitude": 4, "efficiency": 5, "convenience": 5}
    assert rating["channel"] == "phone" and rating["provider"] == "twilio"
    assert rating["comment"] is None
    assert rating["recordings"] == {
        "comment": {"url": RECORDING + "comment", "transcription": None}
    }


async def test_speech_answers_are_read_by_the_engine_parser(harness: Harness) -> None:
    await harness.report()
    call = Call(harness)
    await call.start()
    assert "服务态度" in spoken(await call.say("五星。"))
    await call.say("满意")
    await call.say("非常满意")
    await call.say("一般")
    await call.record_nothing()  # nothing said on the optional comment: skipped
    rating = await rating_of(harness)
    assert rating is not None and rating["status"] == "complete"
    assert rating["level"] == 5
    assert rating["dimensions"] == {"attitude": 4, "efficiency": 5, "convenience": 3}
    assert rating["recordings"] == {}


async def test_unsure_speech_and_silence_ask_again_with_a_hint_then_hang_up(
    harness: Harness,
) -> None:
    await harness.report()
    call = Call(harness)
    await call.start()
    again = await call.say("五星", confidence="0.21")  # below RATEBOT_VOICE_MIN_CONFIDENCE
    assert "没有听清" in spoken(again) and "总体评价" in spoken(again)
    assert gather(again).get("action") == f"{PUBLIC_URL}/channels/voice/answer?turn=2"
    assert "没有听清" in spoken(await call.silence())
    goodbye = await call.press("9")
    assert ended(goodbye) and "多次未能识别" in spoken(goodbye)
    assert await rating_of(harness) is None  # no level: not a rating


async def test_star_repeats_the_question_without_counting_a_retry(harness: Harness) -> None:
    await harness.report()
    call = Call(harness)
    await call.start()
    await call.press("3")
    await call.silence()
    await call.silence()  # two unusable answers to attitude so far
    repeated = await call.press("*")
    assert "服务态度" in spoken(repeated) and "没有听清" not in spoken(repeated)
    after = await call.press("4")  # a third miss would have ended the call
    assert "工作效率" in spoken(after)


async def test_hang_up_mid_survey_keeps_an_incomplete_rating(harness: Harness) -> None:
    await harness.report()
    call = Call(harness)
    await call.start()
    await call.press("2")
    await call.press("3")
    await call.hang_up("completed")
    rating = await rating_of(harness)
    assert rating is not None and rating["status"] == "incomplete" and rating["level"] == 2
    assert rating["dimensions"] == {"attitude": 3}
    await call.hang_up("completed")  # Twilio repeats a callback: nothing changes
    assert len(ratings(harness)) == 1


async def test_hang_up_before_any_answer_leaves_no_rating(harness: Harness) -> None:
    await harness.report()
    call = Call(harness)
    await call.start()
    await call.hang_up("completed")
    assert await rating_of(harness) is None
    # The next call starts over with the case's first question.
    assert "总体评价" in spoken(await Call(harness).start())


async def test_the_late_end_of_an_earlier_call_leaves_the_next_call_alone(
    harness: Harness,
) -> None:
    """The caller hangs up and calls straight back; the first call's status comes late."""
    await harness.report()
    first = Call(harness)
    await first.start()
    await first.press("2")
    again = Call(harness)
    assert "服务态度" in spoken(await again.start())  # the conversation goes on in this call
    await first.hang_up("completed")  # late: the conversation is on the second call now
    assert "工作效率" in spoken(await again.press("3"))  # not "already rated"
    await again.hang_up("completed")
    rating = await rating_of(harness)
    assert rating is not None and rating["status"] == "incomplete"
    assert rating["level"] == 2 and rating["dimensions"] == {"attitude": 3}
    assert "已完成" in spoken(await Call(harness).start())  # the second call's end closed it


async def test_a_late_answer_of_an_earlier_call_never_lands_in_the_next_call(
    harness: Harness,
) -> None:
    """Regression: the first call's last <Gather> (or <Record>) action, posted after the caller
    had called straight back, answered the second call's question; a "*" from it moved the
    conversation back onto the first call, so the second call's own answers were then ignored."""
    await harness.report()
    first = Call(harness)
    await first.start()
    await first.press("2")  # overall level; now at attitude
    stale_action = first.action
    again = Call(harness)
    assert "服务态度" in spoken(await again.start())
    assert stale_action is not None
    late = await first.follow(stale_action, Digits="5")  # the first call's late answer
    assert ended(late) and spoken(late) == ""
    assert ended(await first.follow(stale_action, Digits="*"))  # and its "say it again"
    await first.hang_up("completed")
    assert "工作效率" in spoken(await again.press("3"))  # attitude is the second call's 3
    await again.hang_up("completed")
    rating = await rating_of(harness)
    assert rating is not None and rating["level"] == 2 and rating["dimensions"] == {"attitude": 3}


async def test_bad_review_complaint_by_keys_and_voice(harness: Harness) -> None:
    await harness.report()
    call = Call(harness)
    await call.start()
    for key in "1", "2", "2":
        await call.press(key)
    problems = await call.press("1")
    g = gather(problems)
    assert g.get("finishOnKey") == "#" and g.get("numDigits") is None
    assert "可以按多个键" in spoken(problems)
    details = await call.press("13")  # several categories, ended by #
    assert details.find("Record") is not None
    callback = await call.record("details")
    assert "回访" in spoken(callback) and "是请按1" in spoken(callback)
    done = await call.press("1")
    assert ended(done)
    rating = await rating_of(harness)
    assert rating is not None and rating["status"] == "complete" and rating["bad_review"]
    assert rating["complaint"] == {
        "problems": ["attitude", "repeated_visits"],
        "details": None,
        "wants_callback": True,
    }
    assert rating["recordings"]["complaint.details"]["url"] == RECORDING + "details"


async def test_a_complaint_recorded_as_the_caller_hangs_up_is_kept_whatever_comes_first(
    harness: Harness,
) -> None:
    """The caller speaks the complaint and hangs up instead of pressing #. Twilio then posts the
    recording and the call's end; when the end comes first, the recording is still kept."""
    await harness.report()
    call = Call(harness)
    await call.start()
    for key in "1", "2", "2", "1", "13":
        await call.press(key)
    asking = call.twiml
    assert asking is not None and asking.find("Record") is not None
    await call.hang_up("completed")  # the end, reported first
    rating = await rating_of(harness)
    assert rating is not None and rating["status"] == "incomplete" and rating["recordings"] == {}
    late = await call.record("details", digits="hangup")
    assert ended(late) and spoken(late) == ""  # nobody to talk to
    rating = await rating_of(harness)
    assert rating is not None and rating["status"] == "incomplete"
    assert rating["recordings"] == {
        "complaint.details": {"url": RECORDING + "details", "transcription": None}
    }
    # A recording from another call does not land in this rating.
    stranger = Call(harness)
    stranger.twiml = asking
    await stranger.record("other", digits="hangup")
    rating = await rating_of(harness)
    assert rating is not None and set(rating["recordings"]) == {"complaint.details"}
    assert rating["recordings"]["complaint.details"]["url"] == RECORDING + "details"


async def test_zero_skips_the_optional_comment(harness: Harness) -> None:
    await harness.report()
    call = Call(harness)
    await call.start()
    await call.press("4")
    await call.press("4")
    await call.press("4")
    await call.press("4")
    done = await call.record(digits="0")  # 0 ends the recording: skip
    assert ended(done)
    rating = await rating_of(harness)
    assert rating is not None and rating["status"] == "complete" and rating["recordings"] == {}


async def test_transcription_is_kept_with_the_recording(harness: Harness) -> None:
    await harness.report()
    call = Call(harness)
    await call.start()
    for key in "1", "1", "1", "1", "6":
        await call.press(key)
    await call.record("details")  # the details are saved at once: the transcript may come first
    form = {
        "RecordingUrl": RECORDING + "details",
        "RecordingSid": "RE1",
        "TranscriptionText": "窗口让我跑了三次",
        "TranscriptionStatus": "completed",
        "CallSid": call.sid,
    }
    path = "/channels/voice/transcription"
    response = await harness.client.post(path, data=form, headers=harness.signed(path, form))
    assert response.status_code == 204
    await call.hang_up()
    rating = await rating_of(harness)
    assert rating is not None and rating["status"] == "incomplete"
    assert rating["recordings"]["complaint.details"]["transcription"] == "窗口让我跑了三次"


async def test_hotline_transfer_links_the_call_to_its_case(harness: Harness) -> None:
    await harness.report(phone=None)  # no phone on the record: only the transfer links it
    call = Call(harness, phone="+8613900001111")
    await call.start(f"?record_no={RECORD}")
    for key in "5", "5", "5", "5":
        await call.press(key)
    await call.record_nothing()
    rating = await rating_of(harness)
    assert rating is not None and rating["record_no"] == RECORD and not rating["unsolicited"]


async def test_a_caller_without_a_pending_invitation_rates_unsolicited(harness: Harness) -> None:
    call = Call(harness, phone="+8613900002222")
    await call.start()
    await call.press("4")
    await call.hang_up()
    [rating] = ratings(harness)
    assert rating.unsolicited and rating.record_id is None and rating.level == 4
    assert rating.channel == "phone"


async def test_a_rated_case_and_an_unknown_case_are_told_so(harness: Harness) -> None:
    await harness.report()
    assert await harness.reply_text("5")  # rating by SMS is under way
    told = await Call(harness).start(f"?record_no={RECORD}")
    assert ended(told) and "已完成" in spoken(told)
    unknown = await Call(harness).start("?record_no=NO-SUCH-CASE")
    assert ended(unknown) and "未找到该办件" in spoken(unknown)


async def test_a_retried_request_gets_the_same_twiml_and_changes_nothing(
    harness: Harness,
) -> None:
    await harness.report()
    call = Call(harness)
    await call.start()
    action = call.action
    assert action is not None
    first = await call.post(action, Digits="5")
    again = await call.post(action, Digits="5")
    assert first.status_code == again.status_code == 200
    assert first.text == again.text
    different = await call.post(action, Digits="1")  # the same turn, other keys: still a retry
    assert different.text == first.text
    [rating] = ratings(harness)
    assert rating.level == 5


async def test_bad_requests(harness: Harness) -> None:
    call = Call(harness)
    form = call.form()
    response = await harness.client.post("/channels/voice", data=form)
    assert response.status_code == 403
    wrong = harness.signed("/channels/voice?record_no=X", form)  # signed for another URL
    response = await harness.client.post("/channels/voice", data=form, headers=wrong)
    assert response.status_code == 403
    form.pop("CallSid")
    response = await harness.client.post(
        "/channels/voice", data=form, headers=harness.signed("/channels/voice", form)
    )
    assert response.status_code == 400 and "CallSid" in response.json()["detail"]
    path = "/channels/voice/answer?turn=x"
    response = await harness.client.post(
        path, data=call.form(), headers=harness.signed(path, call.form())
    )
    assert response.status_code == 400 and "turn" in response.json()["detail"]
    path = "/channels/voice/status"
    form = call.form()
    form.pop("CallStatus")
    response = await harness.client.post(path, data=form, headers=harness.signed(path, form))
    assert response.status_code == 400


async def test_voice_is_404_without_twilio(database_url: str, clock: FakeClock) -> None:
    async with serving(make_settings(database_url, twilio_auth_token=None), clock) as h:
        response = await h.client.post("/channels/voice", data={"CallSid": "CA1"})
    assert response.status_code == 404


async def test_english_caller_hears_english(harness: Harness) -> None:
    await harness.report(citizen={"phone": PHONE, "locale": "en"})
    first = await Call(harness).start()
    g = gather(first)
    assert g.get("language") == "en-US"
    assert g.find("Say").get("voice") == "Polly.Joanna"  # type: ignore[union-attr]
    assert "for very satisfied, press 5" in spoken(first).lower()


@pytest.fixture
def audio_dir(tmp_path: Path) -> Path:
    prompts = tmp_path / "prompts" / "zh_Hans_CN"
    prompts.mkdir(parents=True)
    (prompts / "survey.overall.prompt.mp3").write_bytes(b"ID3 fake mp3")
    return tmp_path / "prompts"


@pytest.fixture
async def audio_harness(
    database_url: str, clock: FakeClock, audio_dir: Path
) -> AsyncIterator[Harness]:
    async with serving(make_settings(database_url, voice_audio_dir=audio_dir), clock) as h:
        yield h


async def test_recorded_prompts_are_played_and_served(audio_harness: Harness) -> None:
    first = await Call(audio_harness).start()
    play = gather(first).find("Play")
    url = f"{PUBLIC_URL}/channels/voice/audio/zh_Hans_CN/survey.overall.prompt.mp3"
    assert play is not None and play.text == url
    assert "总体评价" not in spoken(first)  # played, not spoken
    response = await audio_harness.client.get(url[len(PUBLIC_URL) :])
    assert response.status_code == 200 and response.content == b"ID3 fake mp3"


# --- Outbound calls ------------------------------------------------------------------------------


@pytest.fixture
def dialer(twilio_harness: Harness) -> Harness:
    """The app placing calls through the real twilio client, to the fake Twilio API."""
    return twilio_harness


def attempts(h: Harness) -> list[CallAttempt]:
    with DbSession(h.rt.db) as db:
        return list(db.exec(select(CallAttempt).order_by(col(CallAttempt.id))).all())


async def test_voice_invitation_is_called_and_runs_the_survey(
    dialer: Harness, fake_twilio: FakeTwilio
) -> None:
    response = await dialer.report(channel="voice")
    assert response.status_code == 201, response.text
    assert fake_twilio.messages == []  # no SMS: the invitation is a call
    await worker.run_due(dialer.rt)
    [placed] = fake_twilio.calls
    assert placed["To"] == PHONE and placed["From"] == TWILIO_FROM
    assert placed["MachineDetection"] == "Enable"
    [attempt] = attempts(dialer)
    assert placed["Url"] == f"{PUBLIC_URL}/channels/voice?record_no={RECORD}&attempt={attempt.id}"
    assert placed["StatusCallback"] == f"{PUBLIC_URL}/channels/voice/status?attempt={attempt.id}"
    assert attempt.status == "queued" and attempt.call_sid

    call = Call(dialer, outbound=True)
    call.sid = attempt.call_sid
    first = await call.follow(placed["Url"], AnsweredBy="human")
    assert "总体评价" in spoken(first)
    for key in "5", "5", "4", "5":
        await call.press(key)
    await call.record_nothing()
    await call.hang_up("completed", f"?attempt={attempt.id}")
    rating = await rating_of(dialer)
    assert rating is not None and rating["status"] == "complete" and rating["channel"] == "phone"
    body = (
        await dialer.client.get(
            f"/api/v1/service-records/{RECORD}", headers=dialer.api_key("platform")
        )
    ).json()
    [invitation] = body["invitations"]
    assert invitation["channel"] == "voice" and invitation["status"] == "sent"
    assert [c["status"] for c in invitation["calls"]] == ["completed"]
    await worker.run_due(dialer.rt)
    assert len(fake_twilio.calls) == 1  # answered: no second call


async def test_busy_no_answer_and_machines_are_retried_then_given_up(
    dialer: Harness, fake_twilio: FakeTwilio
) -> None:
    await dialer.report(channel="voice")
    await worker.run_due(dialer.rt)
    [first] = attempts(dialer)
    call = Call(dialer, outbound=True)
    call.sid = first.call_sid
    await call.hang_up("busy", f"?attempt={first.id}")
    await call.hang_up("busy", f"?attempt={first.id}")  # a repeated callback: one retry only
    first_done, second = attempts(dialer)
    assert first_done.status == "busy" and second.status == "scheduled" and second.attempt == 2
    await worker.run_due(dialer.rt)
    assert len(fake_twilio.calls) == 1  # not before the retry spacing

    dialer.clock.advance(minutes=61)
    await worker.run_due(dialer.rt)
    assert len(fake_twilio.calls) == 2
    second = attempts(dialer)[1]
    machine = Call(dialer, outbound=True)
    machine.sid = second.call_sid
    url = fake_twilio.calls[1]["Url"]
    hung_up = await machine.follow(url, AnsweredBy="machine_start")
    assert ended(hung_up) and spoken(hung_up) == ""
    await machine.hang_up("completed", f"?attempt={second.id}")
    assert attempts(dialer)[1].status == "machine"

    dialer.clock.advance(minutes=61)
    await worker.run_due(dialer.rt)
    third = attempts(dialer)[2]
    unanswered = Call(dialer, outbound=True)
    unanswered.sid = third.call_sid
    await unanswered.hang_up("no-answer", f"?attempt={third.id}")
    dialer.clock.advance(hours=3)
    await worker.run_due(dialer.rt)
    assert [a.status for a in attempts(dialer)] == ["busy", "machine", "no-answer"]
    assert len(fake_twilio.calls) == 3  # RATEBOT_CALL_ATTEMPTS (3) in all
    assert await rating_of(dialer) is None


async def test_calls_wait_for_calling_hours(dialer: Harness, fake_twilio: FakeTwilio) -> None:
    dialer.clock.advance(hours=11)  # 21:00 in Shanghai: after calling hours (09:00-20:00)
    await dialer.report(channel="voice")
    await worker.run_due(dialer.rt)
    assert fake_twilio.calls == []
    [waiting] = attempts(dialer)
    assert waiting.status == "scheduled"
    assert waiting.scheduled_at is not None and waiting.scheduled_at.hour == 1  # 09:00 +08:00
    dialer.clock.advance(hours=12)
    await worker.run_due(dialer.rt)
    assert len(fake_twilio.calls) == 1


async def test_a_status_for_another_call_is_ignored(
    dialer: Harness, fake_twilio: FakeTwilio
) -> None:
    await dialer.report(channel="voice")
    await worker.run_due(dialer.rt)
    [attempt] = attempts(dialer)
    stranger = Call(dialer, outbound=True)  # another CallSid naming this attempt
    await stranger.hang_up("busy", f"?attempt={attempt.id}")
    await stranger.hang_up("busy", "?attempt=not-a-number")
    [unchanged] = attempts(dialer)
    assert unchanged.status == "queued" and unchanged.ended_at is None


async def the_ticket(h: Harness, record_no: str = RECORD) -> dict[str, Any]:
    admin = h.api_key("admin")
    listed = (await h.client.get("/api/v1/tickets", headers=admin)).json()["items"]
    for item in listed:
        ticket = (await h.client.get(f"/api/v1/tickets/{item['id']}", headers=admin)).json()
        if ticket["case"]["record_no"] == record_no:
            return dict(ticket)
    raise AssertionError(f"no ticket for {record_no}")


async def respond_to_the_ticket(h: Harness, record_no: str = RECORD) -> None:
    """The department verifies the bad review and answers it: then the callback is placed."""
    ticket_id = (await the_ticket(h, record_no))["id"]
    admin = h.api_key("admin")
    for what, body in (
        ("acknowledge", {"note": "已电话核实"}),
        ("respond", {"outcome": "rectified", "text": "已对窗口人员批评教育"}),
    ):
        done = await h.client.post(f"/api/v1/tickets/{ticket_id}/{what}", json=body, headers=admin)
        assert done.status_code == 200, done.text


async def test_a_bad_review_that_asked_for_a_callback_is_called_and_re_rated(
    dialer: Harness, fake_twilio: FakeTwilio
) -> None:
    await dialer.report()  # invited by SMS
    for answer in "1", "2", "2", "1", "3", "窗口让我跑了三次", "1":  # 1 = yes, call me back
        await dialer.reply_text(answer)
    first = await rating_of(dialer)
    assert first is not None and first["complaint"]["wants_callback"] is True
    await worker.run_due(dialer.rt)
    assert fake_twilio.calls == []  # the department has not answered yet

    dialer.clock.advance(hours=3)
    await respond_to_the_ticket(dialer)
    await worker.run_due(dialer.rt)
    await worker.run_due(dialer.rt)  # scheduled once, placed once
    [placed] = fake_twilio.calls
    assert "purpose=callback" in placed["Url"] and f"record_no={RECORD}" in placed["Url"]
    call = Call(dialer, outbound=True)
    call.sid = attempts(dialer)[0].call_sid
    await call.follow(placed["Url"], AnsweredBy="human")
    for key in "4", "4", "4", "4":
        await call.press(key)
    await call.record_nothing()
    with DbSession(dialer.rt.db) as db:
        both = db.exec(select(Rating).order_by(col(Rating.evaluation_count))).all()
    assert [(r.evaluation_count, r.level, r.channel) for r in both] == [
        (1, 1, "sms"),
        (2, 4, "phone"),
    ]
    ticket = await the_ticket(dialer)
    assert ticket["state"] == "closed" and ticket["closed_reason"] == "rerated"
    assert ticket["rerating_level"] == 4
    dialer.clock.advance(hours=100)
    await worker.run_due(dialer.rt)
    assert len(fake_twilio.calls) == 1  # one callback per case
    # Re-rated: another follow-up call is told so and ends.
    again = await Call(dialer, outbound=True).start(
        f"?record_no={RECORD}&attempt={attempts(dialer)[0].id}&purpose=callback"
    )
    assert ended(again) and "已完成" in spoken(again)


async def test_a_good_review_gets_no_callback(dialer: Harness, fake_twilio: FakeTwilio) -> None:
    await dialer.report()
    for answer in "5", "5", "5", "5", "0":
        await dialer.reply_text(answer)
    dialer.clock.advance(hours=100)
    await worker.run_due(dialer.rt)
    assert fake_twilio.calls == []
    told = await Call(dialer, outbound=True).start(
        f"?record_no={RECORD}&attempt=1&purpose=callback"
    )
    assert ended(told) and "已完成" in spoken(told)


async def test_a_citizen_who_opted_out_meanwhile_is_not_called(
    dialer: Harness, fake_twilio: FakeTwilio
) -> None:
    dialer.clock.advance(hours=11)  # 21:00: the call waits for calling hours
    await dialer.report(channel="voice")
    assert "退订" in await dialer.reply_text("TD")
    dialer.clock.advance(hours=12)
    await worker.run_due(dialer.rt)
    assert fake_twilio.calls == []
    [attempt] = attempts(dialer)
    assert attempt.status == "canceled" and attempt.error == "opted_out"


async def test_a_valid_rating_by_phone_reads_the_voucher_out_and_texts_it(
    harness: Harness, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.bot.parking_support import CODE, put_hall

    await put_hall(harness, free_minutes=90)
    await harness.report()
    capsys.readouterr()  # the invitation in the console outbox
    call = Call(harness)
    await call.start()
    for key in "2", "2", "2", "2", "6":
        await call.press(key)
    await call.record_nothing()  # no details (optional)
    last_turn = call.action
    assert last_turn is not None
    response = await call.post(last_turn, Digits="2")  # no callback
    done = ET.fromstring(response.text)
    assert ended(done)
    words = spoken(done)
    texted = capsys.readouterr().out
    match = CODE.search(texted)
    assert match is not None, texted
    code = match.group(0).replace("-", "")
    assert "免费停车90分钟" in words and "，".join(code) in words  # spelled, one by one
    assert "+86 138****1234" in texted and "13812341234" not in texted
    retried = await call.post(last_turn, Digits="2")
    assert retried.text == response.text
    assert capsys.readouterr().out == ""  # a retried request texts nothing


async def test_calling_back_after_rating_is_told_it_is_rated(harness: Harness) -> None:
    call = Call(harness, phone="+8613900003333")
    await call.start()
    for key in "5", "5", "5", "5":
        await call.press(key)
    await call.record_nothing()
    await call.hang_up("completed")
    again = await Call(harness, phone="+8613900003333").start()
    assert ended(again) and "已完成" in spoken(again)
    assert len(ratings(harness)) == 1  # not a second unsolicited rating


@pytest.mark.parametrize(
    "field",
    [
        {"SpeechResult": "五\x00"},
        {"Digits": "5\x00"},
        {"RecordingUrl": RECORDING + "x" * 600},
    ],
    ids=["nul-speech", "nul-digits", "long-recording-url"],
)
async def test_answers_a_database_cannot_keep_are_refused(
    harness: Harness, field: dict[str, str]
) -> None:
    call = Call(harness)
    await call.start()
    assert call.action is not None
    response = await call.post(call.action, **field)
    assert response.status_code == 400 and "NUL character or is longer" in response.text
    assert "总体评价" in spoken(await call.press("*"))  # the call goes on, nothing was lost


async def test_hanging_up_at_the_optional_comment_finishes_and_texts_the_voucher(
    harness: Harness, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.bot.parking_support import CODE, put_hall

    await put_hall(harness, free_minutes=60)
    await harness.report()
    capsys.readouterr()
    call = Call(harness)
    await call.start()
    for key in "3", "3", "3", "3":
        await call.press(key)
    await call.hang_up("completed")  # "any comment?" — and the caller is gone
    rating = await rating_of(harness)
    assert rating is not None and rating["status"] == "complete"  # every required step answered
    texted = capsys.readouterr().out
    assert CODE.search(texted) and "+86 138****1234" in texted
    await call.hang_up("completed")  # Twilio repeats the callback: nothing is sent again
    assert capsys.readouterr().out == ""


async def test_a_busy_callback_is_retried_as_a_callback(
    dialer: Harness, fake_twilio: FakeTwilio
) -> None:
    await dialer.report()
    for answer in "1", "2", "2", "1", "3", "0", "1":  # a bad review; call me back: yes
        await dialer.reply_text(answer)
    await respond_to_the_ticket(dialer)  # the callback follows the department's answer
    await worker.run_due(dialer.rt)
    [first] = attempts(dialer)
    busy = Call(dialer, outbound=True)
    busy.sid = first.call_sid
    await busy.hang_up("busy", f"?attempt={first.id}")
    dialer.clock.advance(minutes=61)
    await worker.run_due(dialer.rt)
    assert [(a.purpose, a.attempt) for a in attempts(dialer)] == [("callback", 1), ("callback", 2)]
    assert "purpose=callback" in fake_twilio.calls[1]["Url"]


async def test_a_call_waiting_for_calling_hours_is_dropped_once_the_case_is_rated(
    dialer: Harness, fake_twilio: FakeTwilio
) -> None:
    dialer.clock.advance(hours=11)  # 21:00: the call waits for 09:00
    await dialer.report(channel="voice")
    call = Call(dialer)  # the citizen calls the rating line meanwhile and rates
    await call.start()
    for key in "4", "4", "4", "4":
        await call.press(key)
    await call.record_nothing()
    dialer.clock.advance(hours=12)
    await worker.run_due(dialer.rt)
    assert fake_twilio.calls == []
    [attempt] = attempts(dialer)
    assert attempt.status == "canceled" and attempt.error == "rated"


async def test_a_call_being_placed_is_not_taken_for_dead_by_another_worker(
    dialer: Harness, fake_twilio: FakeTwilio, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bot.cases import calls

    dialer.clock.advance(hours=11)
    await dialer.report(channel="voice")  # scheduled for 09:00
    dialer.clock.advance(hours=12, minutes=30)  # placed half an hour after it was due
    place_call = dialer.rt.caller.place_call

    def slow_twilio(to: str, **urls: str):  # another worker looks while Twilio answers
        calls.due(dialer.rt, dialer.clock(), 100)
        return place_call(to, **urls)

    monkeypatch.setattr(dialer.rt.caller, "place_call", slow_twilio)
    await worker.run_due(dialer.rt)
    [attempt] = attempts(dialer)
    assert attempt.status == "queued" and attempt.ended_at is None and attempt.call_sid


async def test_a_busy_conversation_at_call_start_comes_back_to_the_same_url(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bot.conversation.turn import Conversations
    from storage.base import ConversationBusy

    await harness.report()
    open_case = Conversations.open_case
    calls = 0

    async def stuck_once(self: Conversations, *args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ConversationBusy("stuck")
        return await open_case(self, *args, **kwargs)

    monkeypatch.setattr(Conversations, "open_case", stuck_once)
    call = Call(harness)
    busy = await call.start(f"?record_no={RECORD}")
    redirect = busy.find("Redirect")
    assert redirect is not None and "系统繁忙" in spoken(busy)
    assert redirect.text == f"{PUBLIC_URL}/channels/voice?record_no={RECORD}"
    again = await call.follow(redirect.text)
    assert "总体评价" in spoken(again)
    for key in "5", "5", "5", "5":
        await call.press(key)
    await call.record_nothing()
    rating = await rating_of(harness)
    assert rating is not None and not rating["unsolicited"]  # still the transferred case


async def test_callbacks_skip_citizens_who_opted_out_and_schedule_once(
    dialer: Harness, fake_twilio: FakeTwilio
) -> None:
    from bot.cases import feedback

    await dialer.report()
    for answer in "1", "2", "2", "1", "3", "0", "1":
        await dialer.reply_text(answer)
    await dialer.report("370200-2026-0002", phone="+8613900004444")
    for answer in "2", "2", "2", "2", "1", "0", "1":
        await dialer.reply_text(answer, phone="+8613900004444")
    await dialer.reply_text("TD", phone="+8613900004444")
    await respond_to_the_ticket(dialer, "370200-2026-0001")
    await respond_to_the_ticket(dialer, "370200-2026-0002")
    assert await feedback.send_due(dialer.rt) == 2
    assert await feedback.send_due(dialer.rt) == 0  # claimed: never twice
    [attempt] = attempts(dialer)  # the citizen who opted out is neither called nor texted
    assert attempt.purpose == "callback"


async def test_an_anonymous_caller_hears_the_voucher_without_a_promised_sms(
    harness: Harness, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.bot.parking_support import put_hall

    await put_hall(harness)
    await harness.report(phone=None)
    capsys.readouterr()
    call = Call(harness, phone="anonymous")
    await call.start(f"?record_no={RECORD}")
    for key in "5", "5", "5", "5":
        await call.press(key)
    done = await call.record_nothing()
    words = spoken(done)
    assert "免费停车" in words and "请记下停车码" in words and "短信" not in words
    assert "[outbox" not in capsys.readouterr().out


async def test_calling_again_after_rating_reads_the_voucher_and_texts_it(
    harness: Harness, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.bot.parking_support import CODE, put_hall

    await put_hall(harness)
    await harness.report()
    call = Call(harness)
    await call.start()
    for key in "4", "4", "4", "4":
        await call.press(key)
    await call.record_nothing()
    await call.hang_up()
    capsys.readouterr()
    again = await Call(harness).start(f"?record_no={RECORD}")
    assert ended(again) and "已完成" in spoken(again) and "免费停车" in spoken(again)
    assert CODE.search(capsys.readouterr().out)

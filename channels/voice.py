"""The phone (IVR) channel through Twilio Voice: a voice webhook's form → who is on the call and
what they answered (keys, speech, a recording), and the engine's events → TwiML that says or plays
the question and gathers the answer — keys or speech — or records a spoken comment. The contract
is in ``channels.base``.

The engine is the one every channel uses; only the wording differs where the ear needs it
("press 4", not "reply 4"): :data:`FOR_THE_EAR` swaps a catalog message for its spoken form.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from twilio.twiml.voice_response import Gather, VoiceResponse

from channels.base import BUSY, NUL, BadRequest, checked_text
from dialogs.events import Event, InboundEvent, Prompt, Say, VoucherIssued
from locales import N_, gettext, ids
from storage.privacy import InvalidPhone, normalize_phone

log = logging.getLogger("ratebot.voice")

CHANNEL = "voice"
PROVIDER = "twilio"
# Speech recognition and <Say> languages of the shipped locales.
LANGUAGES = {"zh_Hans_CN": "zh-CN", "zh_Hant_TW": "zh-TW", "en": "en-US"}
# Keys the caller presses for things that are not answers.
REPEAT_KEY = "*"
SKIP_KEY = "0"
DONE_KEY = "#"
AUDIO_SUFFIXES = (".mp3", ".wav")
# Twilio's final call statuses: the call is over.
ENDED = frozenset({"completed", "busy", "no-answer", "failed", "canceled"})
# What an answer may carry: nothing a database column cannot keep as it came.
ANSWER_FIELDS = {"Digits": 64, "SpeechResult": 10_000, "RecordingUrl": 500}

# Messages written for reading whose spoken form says "press" instead of "reply". The ids on the
# left are the engine's own (its help, its opt-out confirmation, the survey steps' default hints),
# named here rather than imported: a channel renders what the engine says, it does not run it.
FOR_THE_EAR = {
    "help": N_("voice.help"),
    "optout.confirmed": N_("voice.optout.confirmed"),
    "hint.level": N_("voice.hint.level"),
    "hint.choice": N_("voice.hint.choice"),
    "hint.choice_many": N_("voice.hint.choice_many"),
    "hint.text": N_("voice.hint.text"),
    "hint.yes_no": N_("voice.hint.yes_no"),
}


@dataclass(frozen=True)
class VoiceStyle:
    """How a deployment's calls sound: a Twilio voice per locale, recorded prompts, limits."""

    voices: Mapping[str, str] = field(default_factory=dict)  # locale → Twilio voice name
    audio: Mapping[tuple[str, str], str] = field(default_factory=dict)  # (locale, id) → URL
    gather_timeout: int = 6  # seconds of silence before the answer counts as none
    record_seconds: int = 60  # longest spoken comment
    transcribe_url: str | None = None  # where Twilio posts a recording's transcript

    @classmethod
    def from_directory(cls, directory: Path | None, base_url: str, **options: Any) -> VoiceStyle:
        """A style whose recorded prompts are the files ``directory/<locale>/<message id>.mp3``
        (or ``.wav``), served under ``base_url``."""
        audio: dict[tuple[str, str], str] = {}
        if directory is not None:
            for path in sorted(directory.glob("*/*")):
                if path.suffix in AUDIO_SUFFIXES and path.parent.name in LANGUAGES:
                    audio[(path.parent.name, path.stem)] = (
                        f"{base_url}/{path.parent.name}/{path.name}"
                    )
        return cls(audio=audio, **options)


# --- parsing -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Call:
    """Who is on a call. ``phone``: the citizen's number (E.164), ``None`` for an anonymous
    caller; ``answered_by``: Twilio's answering-machine detection (``human``, ``machine_start``,
    ``fax``…), on a call ratebot placed."""

    sid: str
    phone: str | None
    answered_by: str = ""

    @property
    def contact(self) -> str:
        """What the citizen's conversation is keyed by (once hashed): their number, or the call's
        own for an anonymous caller."""
        return self.phone or f"call:{self.sid}"

    @property
    def by_machine(self) -> bool:
        return self.answered_by.startswith("machine") or self.answered_by == "fax"


@dataclass(frozen=True, slots=True)
class Answer:
    """What the caller answered: ``text`` (keys or speech) or ``recording`` (a URL); both empty
    for no answer, which asks the question again. ``repeat``: the caller asked to hear it again."""

    text: str = ""
    recording: str | None = None
    repeat: bool = False


def form_field(form: Mapping[str, Any], name: str) -> str:
    """A field every request of its kind carries."""
    value = form.get(name)
    if not isinstance(value, str) or not value:
        raise BadRequest(f"missing form field: {name}")
    return checked_text(name, value)


def parse_call(form: Mapping[str, Any]) -> Call:
    """The call a voice webhook is about. On a call ratebot placed the citizen is ``To``."""
    sid = form_field(form, "CallSid")
    outbound = str(form.get("Direction", "inbound")).startswith("outbound")
    number = form_field(form, "To" if outbound else "From")
    try:
        phone: str | None = normalize_phone(number)
    except InvalidPhone:
        phone = None
    return Call(sid, phone, str(form.get("AnsweredBy") or ""))


def parse_answer(
    form: Mapping[str, Any], *, min_confidence: float, nothing_skips: bool = False
) -> Answer:
    """The answer a ``<Gather>`` or a ``<Record>`` posted. Keys win over speech; speech Twilio is
    not sure of (below ``min_confidence``) counts as no answer; a recording ended by 0 skips the
    question, and so does no answer at all when ``nothing_skips`` (the ``<Redirect>`` after the
    recording of an optional question)."""
    for name, limit in ANSWER_FIELDS.items():
        value = form.get(name)
        if isinstance(value, str):
            checked_text(name, value, limit=limit)
    digits = str(form.get("Digits") or "")
    text, recording = _keys_speech_or_recording(form, digits, min_confidence)
    if nothing_skips and not (text or recording):
        text = SKIP_KEY
    return Answer(text, recording, repeat=digits == REPEAT_KEY)


def _keys_speech_or_recording(
    form: Mapping[str, Any], digits: str, min_confidence: float
) -> tuple[str, str | None]:
    recording = form.get("RecordingUrl")
    if isinstance(recording, str) and recording:
        if digits == SKIP_KEY:
            return SKIP_KEY, None
        return "", recording
    if digits and digits != "hangup":
        return digits, None
    speech = str(form.get("SpeechResult") or "")
    if speech:
        try:
            confidence = float(form.get("Confidence") or 0)
        except ValueError:
            confidence = 0.0
        if confidence >= min_confidence:
            return speech, None
        log.info("speech below the confidence floor (%.2f); asked again", confidence)
    return "", None


def parse_status(form: Mapping[str, Any]) -> str:
    """The ``CallStatus`` of a status callback (``ringing``, ``completed``…; see :data:`ENDED`)."""
    return form_field(form, "CallStatus")[:16]


def parse_transcription(form: Mapping[str, Any]) -> tuple[str, str | None]:
    """(recording URL, its transcript) of a transcription callback; ``None`` when Twilio could
    not transcribe it. A transcript is Twilio's guess at the words, not the citizen's own: a NUL
    in it is dropped rather than the transcript refused."""
    url = form_field(form, "RecordingUrl")
    if form.get("TranscriptionStatus") != "completed":
        return url, None
    return url, str(form.get("TranscriptionText") or "").replace(NUL, "")


NO_ANSWER = Answer()


def inbound_event(
    contact_hash: str, call_sid: str, turn: int | str, answer: Answer = NO_ANSWER
) -> InboundEvent:
    """The caller's ``turn`` on call ``call_sid``: 0 the call's start, then each answer in turn,
    ``end`` the call's end (the delivery id makes Twilio's retry of one request a re-delivery).
    Calls carry no language: a new conversation gets the deployment's default."""
    return InboundEvent(
        channel=CHANNEL,
        sender=contact_hash,
        text=answer.text,
        recording=answer.recording,
        delivery_id=f"voice:{call_sid}:{turn}",
        call_sid=call_sid,
    )


# --- rendering -----------------------------------------------------------------------------------


def render_reply(
    events: Sequence[Event],
    locale: str,
    *,
    action: str,
    style: VoiceStyle,
    can_text: bool = True,
) -> str:
    """TwiML for what the engine said. A question gathers its answer (or records it) and posts
    it to ``action``; with no question left the call ends. ``can_text``: a voucher read out is
    also texted to the caller (not to an anonymous one)."""
    response = VoiceResponse()
    prompt = next((e for e in events if isinstance(e, Prompt)), None)
    statements = [_statement(e, can_text) for e in events if isinstance(e, Say | VoucherIssued)]
    if prompt is None:
        for say in statements:
            _speak(response, locale, say.message, say.params, style)
        response.hangup()
    elif prompt.kind == "text":
        for say in statements:
            _speak(response, locale, say.message, say.params, style)
        _ask_to_record(response, prompt, locale, action, style)
    else:
        gather = response.gather(
            input="dtmf speech",
            action=action,
            method="POST",
            language=LANGUAGES.get(locale, "zh-CN"),
            timeout=style.gather_timeout,
            speech_timeout="auto",
            action_on_empty_result=True,
            hints=", ".join(gettext(locale, label) for _, label in prompt.options),
            **({"finish_on_key": DONE_KEY} if prompt.multiple else {"num_digits": 1}),
        )
        for say in statements:
            _speak(gather, locale, say.message, say.params, style)
        _ask(gather, prompt, locale, style)
    return str(response)


def busy_reply(locale: str, *, retry_url: str) -> str:
    """:data:`~channels.base.BUSY` said, then the call comes back to ``retry_url``: the request
    that found the conversation busy (the same case, turn and attempt; an answer counts as
    none)."""
    response = VoiceResponse()
    for say in BUSY:
        response.say(gettext(locale, say.message, **say.params), language=LANGUAGES.get(locale))
    response.redirect(retry_url, method="POST")
    return str(response)


def hang_up() -> str:
    """TwiML that ends the call at once (an answering machine picked up)."""
    response = VoiceResponse()
    response.hangup()
    return str(response)


def _statement(event: Say | VoucherIssued, can_text: bool) -> Say:
    """A voucher is read out: its code one character at a time, twice (and said to be texted,
    when it is)."""
    if isinstance(event, Say):
        return event
    spelled = "，".join(event.scan_data)
    return Say(
        ids.VOICE_VOUCHER if can_text else ids.VOICE_VOUCHER_SPOKEN,
        {
            "hall": event.hall,
            "minutes": event.free_minutes,
            "code": spelled,
            "expires": event.expires_at.strftime("%Y-%m-%d %H:%M"),
        },
    )


def _ask(gather: Gather, prompt: Prompt, locale: str, style: VoiceStyle) -> None:
    if prompt.hint:
        _speak(gather, locale, prompt.hint, {}, style)
    _speak(gather, locale, prompt.message, prompt.params, style)
    separator = gettext(locale, ids.LIST_SEPARATOR)
    keys = separator.join(
        gettext(locale, ids.VOICE_OPTION, key=value, label=gettext(locale, label))
        for value, label in prompt.options
    )
    _say(gather, locale, keys, style)
    if prompt.multiple:
        _speak(gather, locale, ids.VOICE_CHOICE_MANY, {}, style)
    _speak(gather, locale, ids.VOICE_SPEAK, {}, style)
    if prompt.optional:
        _speak(gather, locale, ids.VOICE_SKIP, {}, style)
    _speak(gather, locale, ids.VOICE_REPEAT, {}, style)


def _ask_to_record(
    response: VoiceResponse, prompt: Prompt, locale: str, action: str, style: VoiceStyle
) -> None:
    """Say the question, then record the answer. A recording ended by 0 skips an optional
    question; one Twilio does not post (nothing was said) comes back through the redirect as
    an empty answer."""
    if prompt.hint:
        _speak(response, locale, prompt.hint, {}, style)
    _speak(response, locale, prompt.message, prompt.params, style)
    _speak(response, locale, ids.VOICE_RECORD, {}, style)
    if prompt.optional:
        _speak(response, locale, ids.VOICE_SKIP, {}, style)
    response.record(
        action=action,
        method="POST",
        max_length=style.record_seconds,
        finish_on_key=DONE_KEY + (SKIP_KEY if prompt.optional else ""),
        timeout=style.gather_timeout,
        play_beep=True,
        trim="trim-silence",
        **(
            {"transcribe": True, "transcribe_callback": style.transcribe_url}
            if style.transcribe_url
            else {}
        ),
    )
    # Twilio posts no recording when nothing was said: on an optional question that skips it.
    response.redirect(action + ("&nothing=skip" if prompt.optional else ""), method="POST")


def _speak(
    verb: VoiceResponse | Gather,
    locale: str,
    message: str,
    params: Mapping[str, Any],
    style: VoiceStyle,
) -> None:
    """One catalog message: its recorded audio when the deployment has it (and it takes no
    values), else spoken by Twilio's text-to-speech."""
    message = FOR_THE_EAR.get(message, message)
    audio = None if params else style.audio.get((locale, message))
    if audio is not None:
        verb.play(audio)
    else:
        _say(verb, locale, gettext(locale, message, **params), style)


def _say(verb: VoiceResponse | Gather, locale: str, text: str, style: VoiceStyle) -> None:
    if not text:
        return
    named = style.voices.get(locale)  # a named voice speaks its own language
    verb.say(text, voice=named) if named else verb.say(text, language=LANGUAGES.get(locale))


def render_terminal(events: Sequence[Event], locale: str) -> str:
    """What a caller would hear, as text, for ``ratebot chat --channel voice``."""
    import xml.etree.ElementTree as ET

    twiml = render_reply(events, locale, action="", style=VoiceStyle())
    root = ET.fromstring(twiml)  # noqa: S314 - TwiML made just above, not untrusted input
    lines = [f"🔊 {say.text}" for say in root.iter("Say") if say.text]
    if root.find("Gather") is not None:
        lines.append("(keys: 1-5, * repeat, 0 skip; or type what you would say)")
    elif root.find("Record") is not None:
        lines.append("(type what you would say after the tone; 0 to skip)")
    elif root.find("Hangup") is not None:
        lines.append("(the call ends)")
    return "\n".join(lines)

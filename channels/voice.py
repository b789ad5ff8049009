"""The phone (IVR) channel through Twilio Voice: the engine's events → TwiML that says or plays
the question and gathers the answer — keys or speech — or records a spoken comment.

The engine is the one every channel uses; only the wording differs where the ear needs it
("press 4", not "reply 4"): :data:`FOR_THE_EAR` swaps a catalog message for its spoken form.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from twilio.twiml.voice_response import Gather, VoiceResponse

from dialogs.engine import HELP, LEVEL_OPTIONS, OPTOUT_CONFIRMED
from dialogs.events import Event, Prompt, Say, VoucherIssued
from locales import N_, gettext, ids

CHANNEL = "voice"
# Speech recognition and <Say> languages of the shipped locales.
LANGUAGES = {"zh_Hans_CN": "zh-CN", "zh_Hant_TW": "zh-TW", "en": "en-US"}
# Keys the caller presses for things that are not answers.
REPEAT_KEY = "*"
SKIP_KEY = "0"
DONE_KEY = "#"
AUDIO_SUFFIXES = (".mp3", ".wav")

# Messages written for reading whose spoken form says "press" instead of "reply".
FOR_THE_EAR = {
    HELP: N_("voice.help"),
    OPTOUT_CONFIRMED: N_("voice.optout.confirmed"),
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


def render(
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
            hints=", ".join(gettext(locale, label) for _, label in _options(prompt)),
            **({"finish_on_key": DONE_KEY} if prompt.multiple else {"num_digits": 1}),
        )
        for say in statements:
            _speak(gather, locale, say.message, say.params, style)
        _ask(gather, prompt, locale, style)
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


def _options(prompt: Prompt) -> Sequence[tuple[str, str]]:
    return prompt.options or (LEVEL_OPTIONS if prompt.kind == "level" else ())


def _ask(gather: Gather, prompt: Prompt, locale: str, style: VoiceStyle) -> None:
    if prompt.hint:
        _speak(gather, locale, prompt.hint, {}, style)
    _speak(gather, locale, prompt.message, prompt.params, style)
    separator = gettext(locale, ids.LIST_SEPARATOR)
    keys = separator.join(
        gettext(locale, ids.VOICE_OPTION, key=value, label=gettext(locale, label))
        for value, label in _options(prompt)
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

    twiml = render(events, locale, action="", style=VoiceStyle())
    root = ET.fromstring(twiml)  # noqa: S314 - TwiML made just above, not untrusted input
    lines = [f"🔊 {say.text}" for say in root.iter("Say") if say.text]
    if root.find("Gather") is not None:
        lines.append("(keys: 1-5, * repeat, 0 skip; or type what you would say)")
    elif root.find("Record") is not None:
        lines.append("(type what you would say after the tone; 0 to skip)")
    elif root.find("Hangup") is not None:
        lines.append("(the call ends)")
    return "\n".join(lines)

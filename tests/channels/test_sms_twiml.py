"""The SMS reply's TwiML, made from a template: for any text the bytes twilio's
``MessagingResponse`` makes, except that characters XML cannot hold are left out (twilio would
put them in, and Twilio could not parse the answer)."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from hypothesis import given, settings
from hypothesis import strategies as st
from twilio.twiml.messaging_response import MessagingResponse

from channels.sms import twiml

DECLARATION = '<?xml version="1.0" encoding="UTF-8"?>'


def is_xml_char(char: str) -> bool:
    """XML 1.0 (section 2.2, ``Char``): what a document may hold, as itself or a reference."""
    n = ord(char)
    return n in (0x9, 0xA, 0xD) or 0x20 <= n <= 0xD7FF or 0xE000 <= n <= 0xFFFD or n >= 0x10000


def twilio_twiml(text: str) -> str:
    response = MessagingResponse()
    if text:
        response.message(text)
    return str(response)


# Any code point, lone surrogates included, with what XML escapes or mangles drawn often.
any_char = st.one_of(
    st.sampled_from("&<>\"'];\r\n\t \x00\x01\x1f\x7f\ud800\udfff\ufffe\uffff中😀"),
    st.characters(exclude_categories=()),
)


@settings(max_examples=300)
@given(st.text(any_char.filter(is_xml_char)))
def test_the_template_makes_what_twilio_makes(text: str) -> None:
    assert twiml(text) == twilio_twiml(text)


@settings(max_examples=300)
@given(st.text(any_char))
def test_the_reply_is_always_xml_that_gives_the_text_back(text: str) -> None:
    root = ET.fromstring(twiml(text).encode())  # noqa: S314 - our own output, expat is strict
    kept = "".join(char for char in text if is_xml_char(char))
    # An XML parser reads a line end (CR LF, or a lone CR) as LF, in twilio's TwiML too.
    said = kept.replace("\r\n", "\n").replace("\r", "\n")
    assert root.tag == "Response"
    assert [(m.tag, m.text or "") for m in root] == ([("Message", said)] if kept else [])


def test_no_text_is_an_empty_response() -> None:
    assert twiml("") == twilio_twiml("") == f"{DECLARATION}<Response />"
    # Nothing XML can hold is left of a lone control character: nothing to send.
    assert twiml("\x07") == f"{DECLARATION}<Response />"


def test_a_message_is_escaped_and_stripped_of_what_xml_cannot_hold() -> None:
    assert twiml('1 & <2> "3"') == (
        f'{DECLARATION}<Response><Message>1 &amp; &lt;2&gt; "3"</Message></Response>'
    )
    assert (
        twiml("好\x00评\x1b\ud83d") == f"{DECLARATION}<Response><Message>好评</Message></Response>"
    )

"""Catalog ids used outside the dialog engine (the bot and the channels), marked for extraction.

The engine's own ids are marked where they are used (``dialogs/``) and in the survey files.
"""

from __future__ import annotations

from locales import N_

INVITATION_INTRO = N_("invitation.intro")  # {date} {hall} {item}
INVITATION_OPTOUT = N_("invitation.optout")
REMINDER_INTRO = N_("reminder.intro")  # {date} {hall} {item}
SMS_REPLY_LEVEL = N_("sms.reply.level")  # {options}
SMS_REPLY_CHOICE_MANY = N_("sms.reply.choice_many")  # {options}
SMS_REPLY_CHOICE_ONE = N_("sms.reply.choice_one")  # {options}
SMS_REPLY_YES_NO = N_("sms.reply.yes_no")
SMS_REPLY_SKIP = N_("sms.reply.skip")
LIST_SEPARATOR = N_("list.separator")
ERROR_BUSY = N_("error.busy")
CASE_UNKNOWN = N_("case.unknown")
TELEGRAM_SKIP = N_("telegram.button.skip")
TELEGRAM_CHOICE_MANY = N_("telegram.reply.choice_many")
TELEGRAM_ALREADY_ANSWERED = N_("telegram.already_answered")
TELEGRAM_LANGUAGE_PROMPT = N_("telegram.language.prompt")
TELEGRAM_LANGUAGE_SET = N_("telegram.language.set")
TELEGRAM_INVITE_BUTTON = N_("telegram.invite.button")  # opens the case's deep link
TELEGRAM_INVITE_OPTOUT = N_("telegram.invite.optout")
WECHAT_WELCOME = N_("wechat.welcome")
VOICE_WELCOME = N_("voice.welcome")
VOICE_OPTION = N_("voice.option")  # {key} {label}
VOICE_CHOICE_MANY = N_("voice.choice_many")
VOICE_SPEAK = N_("voice.speak")
VOICE_SKIP = N_("voice.skip")
VOICE_REPEAT = N_("voice.repeat")
VOICE_RECORD = N_("voice.record")
VOICE_VOUCHER = N_("voice.voucher")  # {hall} {minutes} {code} {expires}
VOICE_VOUCHER_SPOKEN = N_(
    "voice.voucher.spoken"
)  # the same, not texted: {hall} {minutes} {code} {expires}
# --- parking vouchers ---
VOUCHER_ISSUED = N_("voucher.issued")  # {hall} {minutes} {code} {expires} {url}
VOUCHER_PAGE_TITLE = N_("voucher.page.title")
VOUCHER_PAGE_CODE = N_("voucher.page.code")
VOUCHER_PAGE_MINUTES = N_("voucher.page.minutes")  # {minutes}
VOUCHER_PAGE_EXPIRES = N_("voucher.page.expires")  # {expires}
VOUCHER_PAGE_HINT = N_("voucher.page.hint")
VOUCHER_PAGE_UNKNOWN = N_("voucher.page.unknown")
VOUCHER_STATE_ISSUED = N_("voucher.state.issued")
VOUCHER_STATE_REDEEMED = N_("voucher.state.redeemed")  # {time}
VOUCHER_STATE_EXPIRED = N_("voucher.state.expired")
VOUCHER_STATE_REVOKED = N_("voucher.state.revoked")
# --- the closed loop: the department's answer to a bad review, and the re-rating ---
FEEDBACK_RECTIFIED = N_("feedback.rectified")  # {department} {item} {text}
FEEDBACK_EXPLAINED = N_("feedback.explained")  # {department} {item} {text}
FEEDBACK_RERATE = N_("feedback.rerate")
WARNING_MALICIOUS = N_("warning.malicious")  # {item}

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
WECHAT_WELCOME = N_("wechat.welcome")

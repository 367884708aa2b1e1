"""Send an email through the Mailgun HTTP API or SMTP: one place shared by the functions.

```python
from mailer import Message, send

send(Message.build(to="a@example.com", subject="Hi", text="Hello"))
```
Configuration comes from the environment (see :mod:`mailer.config`). Every error is a
:class:`MailerError`; its ``retryable`` tells a job whether to try again. A message that cannot
be built (a bad field, a header with a line break, more than one address in one value) raises
:class:`InvalidMessageError`, never retryable. :func:`mask_link` / :func:`mask_links` hide the
tokens of links before they are logged (dry runs).
"""

from __future__ import annotations

from mailer.config import (
    MailgunSettings,
    Settings,
    SmtpSettings,
    default_sender,
    load_settings,
)
from mailer.errors import (
    ConfigurationError,
    InvalidMessageError,
    MailerError,
    RejectedError,
    TemporaryError,
)
from mailer.message import LINE_BREAKS, Message, check_address, check_header, check_text
from mailer.redact import mask_link, mask_links
from mailer.send import send

__all__ = [
    "LINE_BREAKS",
    "ConfigurationError",
    "InvalidMessageError",
    "MailerError",
    "MailgunSettings",
    "Message",
    "RejectedError",
    "Settings",
    "SmtpSettings",
    "TemporaryError",
    "check_address",
    "check_header",
    "check_text",
    "default_sender",
    "load_settings",
    "mask_link",
    "mask_links",
    "send",
]

"""Send an email through the Mailgun HTTP API or SMTP: one place shared by the functions.

```python
from mailer import Message, send

send(Message.build(to="a@example.com", subject="Hi", text="Hello"))
```
Configuration comes from the environment (see :mod:`mailer.config`). Every error is a
:class:`MailerError`; its ``retryable`` tells a job whether to try again.
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
from mailer.message import Message, check_address, check_header
from mailer.send import send

__all__ = [
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
    "default_sender",
    "load_settings",
    "send",
]

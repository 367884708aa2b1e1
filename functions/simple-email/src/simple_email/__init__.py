"""Job function for the ``simple-email`` task: ``jobfn serve simple_email``."""

from __future__ import annotations

from simple_email.function import simple_email
from simple_email.payload import SimpleEmail

__all__ = ["SimpleEmail", "simple_email"]

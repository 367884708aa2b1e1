"""Job function for the ``email:send_verification_link`` task.

Serve it with ``jobfn serve send_verification_link``.
"""

from __future__ import annotations

from send_verification_link.function import send_verification_link
from send_verification_link.payload import VerificationLink

__all__ = ["VerificationLink", "send_verification_link"]

"""Job function for the email:send_verification_link task."""

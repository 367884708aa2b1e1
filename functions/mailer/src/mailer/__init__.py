"""Send an email through Mailgun or SMTP."""

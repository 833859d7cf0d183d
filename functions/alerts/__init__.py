"""E-mail alerts: which events deserve a mail, their rate limits, and the SMTP client."""

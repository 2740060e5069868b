"""Email over SMTP with aiosmtplib: STARTTLS (or implicit TLS) and login, one connection per message.

The message's ``Message-ID`` is made from the delivery id, so a retried message carries the same
id (mail clients thread and some servers dedupe by it); ``X-Tradeflow-Delivery`` carries it too.
SMTP 5xx answers (bad recipient, refused login) fail at once; 4xx and connection trouble retry.
A certificate that does not verify is a configuration problem: it fails at once too.
"""

from __future__ import annotations

import ssl
from email.message import EmailMessage
from email.utils import formatdate

import aiosmtplib

from tradeflow_notifier.domain.channels import EmailChannel
from tradeflow_notifier.domain.retry import SendResult
from tradeflow_notifier.domain.signing import DELIVERY_HEADER


def email_message(channel: EmailChannel, subject: str, body: str, delivery_id: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = channel.from_
    message["To"] = ", ".join(channel.to)
    message["Subject"] = subject
    message["Date"] = formatdate(usegmt=True)
    message["Message-ID"] = f"<{delivery_id}@tradeflow.notifier>"
    message[DELIVERY_HEADER] = delivery_id
    message.set_content(body)
    return message


def tls_context(channel: EmailChannel) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=channel.ca_file) if channel.ca_file else ssl.create_default_context()


async def send_email(channel: EmailChannel, subject: str, body: str, delivery_id: str, timeout_s: float) -> SendResult:
    password = channel.password.get_secret_value() if channel.password is not None else None
    try:
        await aiosmtplib.send(
            email_message(channel, subject, body, delivery_id), hostname=channel.host, port=channel.port,
            username=channel.username, password=password, use_tls=channel.security == "tls",
            start_tls=True if channel.security == "starttls" else False if channel.security == "none" else None,
            tls_context=tls_context(channel) if channel.security != "none" else None, timeout=timeout_s)
    except ssl.SSLCertVerificationError as exc:
        return SendResult.rejected(f"TLS: the server's certificate does not verify: {exc.verify_message}")
    except aiosmtplib.SMTPRecipientsRefused as exc:
        refused = "; ".join(f"{r.recipient}: {r.code} {r.message}" for r in exc.recipients)
        return SendResult.rejected(f"SMTP recipients refused: {refused}")
    except aiosmtplib.SMTPResponseException as exc:
        error = f"SMTP {exc.code}: {exc.message}"
        return SendResult.rejected(error) if exc.code >= 500 else SendResult.retry(error)
    except (aiosmtplib.SMTPException, OSError) as exc:
        return SendResult.retry(f"SMTP: {type(exc).__name__}: {exc}")
    return SendResult.delivered()

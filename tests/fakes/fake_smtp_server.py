"""A real SMTP server for the notifier's email tests: aiosmtpd with STARTTLS required and AUTH.

Serves on 127.0.0.1 and a free port with a self-signed certificate (made here with
``cryptography``, valid for 127.0.0.1 and localhost) that clients verify through ``ca_file``.
Logins other than the configured user and password are refused with 535; ``refuse_recipients``
makes RCPT answer 550 for those addresses. Received messages are parsed (``messages``).
"""

from __future__ import annotations

import datetime
import email
import ipaddress
import socket
import ssl
from email.message import Message
from pathlib import Path

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    """(certificate, key) PEM files for 127.0.0.1 and localhost, valid for a day."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "tradeflow test smtp")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                    x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256()))
    cert_path, key_path = directory / "smtp-cert.pem", directory / "smtp-key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Handler:
    def __init__(self, server: FakeSmtpServer) -> None:
        self._server = server

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: N802 (aiosmtpd's names)
        if address in self._server.refused_recipients:
            return "550 5.1.1 mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # noqa: N802
        self._server.messages.append(email.message_from_bytes(envelope.content))
        self._server.tls_used.append(session.ssl is not None)
        return "250 Message accepted for delivery"


class FakeSmtpServer:
    def __init__(self, directory: Path, username: str = "notifier", password: str = "smtp-secret-password") -> None:
        self.username, self.password = username, password
        self.cert_file, self.key_file = self_signed_certificate(directory)
        self.port = _free_port()
        self.messages: list[Message] = []
        self.tls_used: list[bool] = []
        self.refused_recipients: set[str] = set()
        self.failed_logins = 0
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert_file, self.key_file)
        self._controller = Controller(
            _Handler(self), hostname="127.0.0.1", port=self.port, tls_context=context, require_starttls=True,
            auth_required=True, auth_require_tls=True, authenticator=self._authenticate)

    def _authenticate(self, server, session, envelope, mechanism, auth_data) -> AuthResult:
        if isinstance(auth_data, LoginPassword) and auth_data.login.decode() == self.username \
                and auth_data.password.decode() == self.password:
            return AuthResult(success=True)
        self.failed_logins += 1
        return AuthResult(success=False, handled=False)

    def start(self) -> FakeSmtpServer:
        self._controller.start()
        return self

    def stop(self) -> None:
        self._controller.stop()

    def channel(self, channel_id: str = "mail", password: str | None = None, **fields) -> dict:
        """A channel definition for this server (the notifier's ``email`` kind)."""
        return {"id": channel_id, "kind": "email", "host": "127.0.0.1", "port": self.port, "username": self.username,
                "password": self.password if password is None else password, "from": "Tradeflow <notifier@example.com>",
                "to": ["ops@example.com"], "ca_file": str(self.cert_file), **fields}

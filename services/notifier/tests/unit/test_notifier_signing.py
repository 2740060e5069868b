"""The webhook signature of design.md against an independent HMAC (openssl), and what a receiver checks."""

from __future__ import annotations

import pytest
from tradeflow_notifier.domain.signing import BadSignature, signature_header, verify

SECRET = "whsec_0123456789abcdef"
BODY = b'{"id":"fill:1"}'
# printf '1700000000.{"id":"fill:1"}' | openssl dgst -sha256 -hmac 'whsec_0123456789abcdef'
OPENSSL_HEX = "887156fa1526dae14c739eb43556076ad349900d481b483a180a25d2e755e9ac"


def test_the_header_is_t_and_the_hex_hmac_of_t_dot_raw_body():
    assert signature_header(SECRET, 1_700_000_000, BODY) == f"t=1700000000,v1={OPENSSL_HEX}"


def test_a_receiver_accepts_the_signature_and_gets_the_signed_time():
    header = signature_header(SECRET, 1_700_000_000, BODY)
    assert verify(SECRET, header, BODY, now=1_700_000_010) == 1_700_000_000


@pytest.mark.parametrize("secret, body, now, why", [
    ("whsec_other_secret_value", BODY, 1_700_000_000, "does not match"),
    (SECRET, BODY + b" ", 1_700_000_000, "does not match"),  # one byte more: re-serialized bodies fail
    (SECRET, BODY, 1_700_000_301, "away from now"),  # a replay of an old delivery
])
def test_a_receiver_refuses_another_secret_a_changed_body_and_an_old_timestamp(secret, body, now, why):
    header = signature_header(SECRET, 1_700_000_000, BODY)
    with pytest.raises(BadSignature, match=why):
        verify(secret, header, body, now=now)


def test_a_receiver_refuses_a_header_it_cannot_read():
    with pytest.raises(BadSignature, match="expected"):
        verify(SECRET, "sha256=abc", BODY, now=1_700_000_000)

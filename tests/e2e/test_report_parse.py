"""Delivery status notifications (lib/ims report.c) as a mail reader sees them: the unit test
program writes sample reports (IMS_REPORT_SAMPLES) and Python's email package must parse each
as multipart/report; report-type=delivery-status with the recipients, actions and statuses
the samples were built with, and the original returned as asked."""
import email
import email.policy
import os
import subprocess

import pytest

from conftest import IMS_BIN, REPO, RUN_TIMEOUT

# The unit test program lives beside the programs: build/bin -> build/tests.
REPORT_TEST = os.path.join(os.path.dirname(IMS_BIN), "tests", "report_test")

# name: (subject prefix, [(final recipient, action, status, original recipient)], returned type)
SAMPLES = {
    "failed-full": (
        "Undeliverable: ",
        [
            ("bob@example.com", "failed", "5.1.1", "rfc822;bob@example.com"),
            ("carol@example.com", "failed", "5.4.4", None),
        ],
        "message/rfc822",
    ),
    "failed-hdrs": (
        "Undeliverable: ",
        [
            ("bob@example.com", "failed", "5.1.1", "rfc822;bob@example.com"),
            ("carol@example.com", "failed", "5.4.4", None),
            ("dave@example.com", "delayed", "4.4.1", None),
        ],
        "text/rfc822-headers",
    ),
    "delayed": ("Delayed: ", [("dave@example.com", "delayed", "4.4.1", None)], "text/rfc822-headers"),
    "delivered-full": (
        "Delivered: ",
        [("erin@example.com", "delivered", "2.0.0", "rfc822;Erin+Tag@example.com")],
        "message/rfc822",
    ),
    "collision": (
        "Undeliverable: ",
        [("bob@example.com", "failed", "5.1.1", "rfc822;bob@example.com")],
        "message/rfc822",
    ),
    "big-cut": (
        "Undeliverable: ",
        [("bob@example.com", "failed", "5.1.1", "rfc822;bob@example.com")],
        "text/rfc822-headers",
    ),
}


@pytest.fixture(scope="module")
def samples(tmp_path_factory):
    if not os.access(REPORT_TEST, os.X_OK):
        pytest.fail(f"{REPORT_TEST} is missing: run make all first")
    d = tmp_path_factory.mktemp("reports")
    env = dict(os.environ, IMS_REPORT_SAMPLES=str(d))
    p = subprocess.run([REPORT_TEST], env=env, cwd=REPO, capture_output=True, timeout=RUN_TIMEOUT)
    assert p.returncode == 0, p.stdout.decode() + p.stderr.decode()
    return d


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_report_parses(samples, name):
    prefix, rcpts, returned = SAMPLES[name]
    raw = (samples / f"{name}.eml").read_bytes()
    msg = email.message_from_bytes(raw, policy=email.policy.default)

    assert msg.get_content_type() == "multipart/report"
    assert msg.get_param("report-type") == "delivery-status"
    assert msg["Subject"].startswith(prefix)
    assert msg["Auto-Submitted"] == "auto-replied"
    assert msg["To"].addresses[0].addr_spec == "alice@example.org"
    assert msg["From"].addresses[0].addr_spec == "postmaster@example.net"
    assert msg["Message-ID"].startswith("<") and "@" in msg["Message-ID"]
    assert msg["Date"].datetime is not None
    assert "Bcc" not in msg  # the collision sample's subject tries to add one

    parts = list(msg.iter_parts())
    assert [p.get_content_type() for p in parts] == [
        "text/plain",
        "message/delivery-status",
        returned,
    ]
    assert parts[0].get_content_charset() == "us-ascii"
    text = parts[0].get_content()
    if prefix == "Undeliverable: ":
        assert "Your message did not reach some or all of the intended recipients." in text
        assert "The following recipient(s) could not be reached:" in text
        assert "MSEXCH:IMS:Contoso:Europe:IMS1 " in text

    blocks = parts[1].get_payload()
    per_message, per_rcpt = blocks[0], blocks[1:]
    assert per_message["Reporting-MTA"] == "dns; ims.example.net"
    assert per_message["Arrival-Date"]
    assert len(per_rcpt) == len(rcpts)
    for block, (final, action, status, orcpt) in zip(per_rcpt, rcpts):
        assert block["Final-Recipient"] == f"rfc822;{final}"
        assert block["Action"] == action
        assert block["Status"] == status
        assert block["Original-Recipient"] == orcpt
        if action == "delayed":
            assert block["Will-Retry-Until"]

    orig = parts[2]
    if returned == "message/rfc822":
        inner = orig.get_payload()[0]
        assert inner["Subject"]
        assert inner.get_payload() or inner.is_multipart()
    else:
        headers = orig.get_content()
        assert "Subject:" in headers
        assert "\n\n" not in headers.strip()  # the header section only

    # Every line CRLF-terminated and at most 998 octets; no defects found by the parser.
    lines = raw.split(b"\r\n")
    assert lines[-1] == b""
    assert all(b"\n" not in ln and b"\r" not in ln and len(ln) <= 998 for ln in lines)
    for part in msg.walk():
        assert not part.defects, (part.get_content_type(), part.defects)


def test_failed_full_round_trip(samples):
    """The returned original is the message as sent, line for line."""
    msg = email.message_from_bytes(
        (samples / "failed-full.eml").read_bytes(), policy=email.policy.default
    )
    inner = list(msg.iter_parts())[2].get_payload()[0]
    assert inner["Message-ID"] == "<1@example.org>"
    assert inner.get_content().replace("\r\n", "\n") == "Hello Bob.\n.\nBye\n"
    ds = list(msg.iter_parts())[1].get_payload()
    assert ds[0]["Original-Envelope-Id"] == "ENV+1"

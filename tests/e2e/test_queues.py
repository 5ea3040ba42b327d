"""test_queues.py - `imsctl queues` against a running imsd: a message a peer holds with 451
shows in Out with the peer's reply verbatim; retry after the peer recovers delivers it once;
hold and release; delete with an NDR makes exactly one report, delete without none; the
filters, --json and --summary; MTS-OUT's messages; the tracking log names who acted; bad
arguments and a stopped service.

Waits are bounded (test_smtp.WAIT); nothing measures time."""
import json
import os
import subprocess

import pytest

from conftest import IMS_BIN
from outbound_world import Rule, message, reports, send, tracking, wait_out_empty, world  # noqa: F401
from test_smtp import WAIT, wait_for

ZONE = """
remote.test      MX 10 mx1.remote.test
mx1.remote.test  A  127.0.0.2
other.test       MX 10 mx1.other.test
mx1.other.test   A  127.0.0.2
"""
HOLD_451 = "451 4.3.0 Try again later, greylisted"
SLOW_RETRY = "1"  # RetryInterval: an hour, so only an action brings a message back


def imsctl(svc, *args, check=True):
    p = subprocess.run([os.path.join(IMS_BIN, "imsctl"), "queues", *args], env=svc.env,
                       capture_output=True, text=True, timeout=WAIT)
    if check:
        assert p.returncode == 0, (args, p.returncode, p.stdout, p.stderr)
    return p


def listing(svc, *filters):
    return json.loads(imsctl(svc, "--json", *filters).stdout)


def out_msgs(svc, *filters):
    return [m for m in listing(svc, "--queue", "out", *filters) if m["queue"] == "Out"]


def deferred(svc, n=1):
    """The Out messages once n of them have a recipient that was tried and deferred."""
    def ready():
        ms = out_msgs(svc)
        tried = [m for m in ms if any(r["attempts"] >= 1 for r in m["recipients"])]
        return ms if len(tried) >= n else None
    return wait_for(ready, f"{n} deferred message(s) in Out")


def test_a_451_shows_with_its_reply_then_retry_delivers_once(world):
    world.dns(ZONE)
    peer = world.peer("127.0.0.2", rules=[Rule("rcpt", HOLD_451)])
    svc = world.service(retry=SLOW_RETRY)
    send(svc, "alice@example.com", ["x@remote.test"], message("held by the peer"))
    [m] = deferred(svc)
    assert m["sender"] == "alice@example.com"
    assert m["held"] is False and m["size"] > 0 and m["arrival"] > 0
    [r] = m["recipients"]
    assert r["address"] == "x@remote.test"
    assert r["route"] == "dns" and r["destination"] == "remote.test"
    assert r["state"] == "waiting" and r["attempts"] == 1
    assert r["remote"] == "[127.0.0.2]"
    assert r["reply"] == HOLD_451
    assert r["next_try"] > m["arrival"] + 600  # an hour's retry, not now
    # the text listing says the same
    text = imsctl(svc).stdout
    assert m["id"] in text and HOLD_451 in text and "[127.0.0.2]" in text
    assert "Out 1 message (1 recipient)" in text
    # the peer recovers; retry now delivers it, once
    peer.clear_rules()
    p = imsctl(svc, "retry", m["id"])
    assert "retrying: 1 recipient" in p.stdout, p.stdout
    peer.wait_messages(1)
    wait_out_empty(svc)
    assert len(peer.messages()) == 1
    assert out_msgs(svc) == []
    retry_lines = [l for l in tracking(svc) if l.split("\t")[1:3] == ["1105", m["id"]]]
    assert retry_lines and "root (uid 0)" in retry_lines[0], tracking(svc)
    # acting on a message that left: a clear "not done", exit 1
    p = imsctl(svc, "hold", m["id"], check=False)
    assert p.returncode == 1 and "not in a queue" in p.stdout, (p.stdout, p.stderr)


def test_hold_and_release(world):
    world.dns(ZONE)
    peer = world.peer("127.0.0.2", rules=[Rule("rcpt", HOLD_451)])
    svc = world.service(retry=SLOW_RETRY)
    send(svc, "alice@example.com", ["x@remote.test"], message("to be held"))
    [m] = deferred(svc)
    assert "held: 1 recipient" in imsctl(svc, "hold", m["id"]).stdout
    [h] = out_msgs(svc)
    assert h["held"] is True and h["recipients"][0]["state"] == "held"
    assert "[held]" in imsctl(svc).stdout
    p = imsctl(svc, "hold", m["id"], check=False)
    assert p.returncode == 1 and "held already" in p.stdout
    p = imsctl(svc, "retry", m["id"], check=False)
    assert p.returncode == 1 and "release it first" in p.stdout
    # a restart keeps it held
    svc.stop()
    svc.start()
    [h] = wait_for(lambda: out_msgs(svc) or None, "the queue loaded again")  # its thread reads Out
    assert h["held"] is True
    peer.clear_rules()
    assert "released: 1 recipient" in imsctl(svc, "release", m["id"]).stdout
    peer.wait_messages(1)
    wait_out_empty(svc)
    assert len(peer.messages()) == 1
    events = [l.split("\t")[1] for l in tracking(svc) if m["id"] in l]
    assert "1103" in events and "1104" in events, events


def test_delete_with_and_without_an_ndr(world):
    world.dns(ZONE)
    world.peer("127.0.0.2", rules=[Rule("rcpt", HOLD_451)])
    svc = world.service(retry=SLOW_RETRY)
    send(svc, "alice@example.com", ["x@remote.test"], message("deleted with a report"))
    [m] = deferred(svc)
    p = imsctl(svc, "delete-ndr", m["id"])
    assert "deleted with a non-delivery report: 1 recipient" in p.stdout, p.stdout
    wait_out_empty(svc)
    rs = wait_for(lambda: reports(svc, "alice") or None, "the NDR")
    assert len(rs) == 1
    body = rs[0].as_string()
    assert "5.3.2" in body and "x@remote.test" in body
    # without a report: the queue empties and no second NDR comes
    send(svc, "alice@example.com", ["y@remote.test"], message("deleted silently"))
    [m2] = deferred(svc)
    assert "deleted: 1 recipient" in imsctl(svc, "delete", m2["id"]).stdout
    wait_out_empty(svc)
    assert len(reports(svc, "alice")) == 1
    lines = tracking(svc)
    assert any(l.split("\t")[1:3] == ["1101", m["id"]] for l in lines), lines
    assert any(l.split("\t")[1:3] == ["1102", m2["id"]] for l in lines), lines


def test_filters_summary_and_a_filtered_action(world):
    world.dns(ZONE)
    world.peer("127.0.0.2", rules=[Rule("rcpt", HOLD_451)])
    svc = world.service(retry=SLOW_RETRY)
    send(svc, "alice@example.com", ["a@remote.test", "b@remote.test"], message("one"))
    send(svc, "bob@example.com", ["c@other.test"], message("two"))
    deferred(svc, 2)
    assert len(out_msgs(svc)) == 2
    assert [m["sender"] for m in out_msgs(svc, "--sender", "BOB@example.com")] == \
        ["bob@example.com"]
    assert len(out_msgs(svc, "--domain", "remote.test")) == 1
    assert len(out_msgs(svc, "--recipient", "c@other.test")) == 1
    assert out_msgs(svc, "--older-than", "1d") == []
    assert listing(svc, "--queue", "in") == []
    s = imsctl(svc, "--summary").stdout.splitlines()
    rows = {l.split()[0]: l.split()[1:3] for l in s[1:]}
    assert rows["remote.test"] == ["2", "1"] and rows["other.test"] == ["1", "1"], s
    # hold the filtered set
    p = imsctl(svc, "hold", "--domain", "remote.test")
    assert "held: 2 recipients" in p.stdout, p.stdout
    held = {m["sender"]: m["held"] for m in out_msgs(svc)}
    assert held == {"alice@example.com": True, "bob@example.com": False}


def test_an_unknown_id_is_not_done(world):
    world.dns(ZONE)
    svc = world.service(retry=SLOW_RETRY)
    for action in ("delete", "hold", "retry"):
        p = imsctl(svc, action, "NO-SUCH-MESSAGE", check=False)
        assert p.returncode == 1 and "not in a queue" in p.stdout, (p.stdout, p.stderr)


def test_usage_errors_and_a_stopped_service(world):
    world.dns(ZONE)
    svc = world.service()
    for args in (["--queue", "sideways"], ["--older-than", "soon"], ["delete"],
                 ["--json", "--summary"], ["hold", "X", "--sender", "a@b"], ["--bogus"]):
        p = imsctl(svc, *args, check=False)
        assert p.returncode == 2, (args, p.stdout, p.stderr)
        assert "usage: imsctl queues" in p.stderr
    svc.stop()
    p = imsctl(svc, check=False)
    assert p.returncode == 3 and "not running" in p.stderr


def test_the_control_commands_refuse_bad_input(world):
    """What imsctl checks is checked again by the service: a client of the socket gets the
    reason, and nothing in the queue changes."""
    from test_control import call
    world.dns(ZONE)
    world.peer("127.0.0.2", rules=[Rule("rcpt", HOLD_451)])
    svc = world.service(retry=SLOW_RETRY)
    send(svc, "alice@example.com", ["x@remote.test"], message("kept"))
    [m] = deferred(svc)
    for bad in (b"queue=sideways", b"age=-1", b"age=soon", b"nokey", b"=x", b"colour=red"):
        answer = call(svc.root, b"queues\t" + bad + b"\n")
        assert answer.startswith(b".ERR bad filter"), (bad, answer)
    assert call(svc.root, b"queue-action\tburn\t" + m["id"].encode() + b"\n").startswith(
        b".ERR usage: queue-action")
    assert call(svc.root, b"queue-action\thold\n").startswith(b".ERR usage: queue-action")
    # ids that name no message, or try to leave the folders, are answered one by one
    answer = call(svc.root, b"queue-action\tdelete\t../In/x\t.hidden\t" + b"A" * 300 + b"\n")
    lines = answer.decode().splitlines()
    assert lines[-1] == ".OK" and len(lines) == 4, lines
    assert all("\terror\tnot in a queue" in l for l in lines[:3]), lines
    # the JSON listing parses, and the message is untouched
    body = call(svc.root, b"queues\tqueue=out\n").decode().splitlines()
    assert body[-1] == ".OK"
    [j] = [json.loads(l) for l in body[:-1]]
    assert j["id"] == m["id"] and j["held"] is False
    assert j["recipients"][0]["reply"] == HOLD_451
    assert [x["id"] for x in out_msgs(svc)] == [m["id"]]

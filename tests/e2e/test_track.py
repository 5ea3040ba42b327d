"""test_track.py - `imsctl track` against a running imsd: the whole life of a message delivered
locally, of one relayed to a peer that first answers 451 and then takes it, and of one the peer
refuses with 550 (followed to its NDR), in time order with the remote host and its replies;
--json; the usage errors. The world (DNS, peer, imsd) is outbound_world.py's."""
import json
import os
import re

from outbound_world import Rule, message, send, world, wait_out_empty  # noqa: F401 (fixture)
from test_outbound import FAST_RETRY, ZONE
from test_smtp import run, wait_for


def track(svc, *args, check=True):
    p = run("imsctl", "track", *args, env=svc.env, check=False)
    if check:
        assert p.returncode == 0, (args, p.stdout, p.stderr)
    return p


def life(svc, *args):
    """The JSON answer of `imsctl track ARGS --json` (a list of messages), or None."""
    p = track(svc, *args, "--json", check=False)
    if p.returncode == 1:
        return None
    assert p.returncode == 0, (args, p.stdout, p.stderr)
    return json.loads(p.stdout)


def events(msg):
    return [e["event"] for e in msg["events"]]


def life_ending(svc, msgid, last):
    """The messages of msgid's life once its first message's events end with event last."""
    return wait_for(lambda: (lambda m: m if m and events(m[0])[-1:] == [last] else None)(
        life(svc, "--message-id", msgid)), f"{msgid}'s life to end with {last}")


def test_track_delivered_relayed_bounced(world):
    world.dns(ZONE)
    world.peer("127.0.0.2", rules=[
        Rule("rcpt", "550 5.1.1 <bad@remote.test>: User unknown", address="bad@remote.test"),
        Rule("dot", "451 4.3.0 Try again later", times=1)])
    svc = world.service(retry=FAST_RETRY)
    send(svc, "sender@client.test", ["alice@example.com"],
         message("local", msgid="<local@client.test>"))
    send(svc, "alice@example.com", ["x@remote.test"], message("relay", msgid="<relay@client.test>"))
    send(svc, "alice@example.com", ["bad@remote.test"],
         message("bounce", msgid="<bounce@client.test>"))
    wait_out_empty(svc)

    # Delivered locally: received, then transferred in.
    [m] = life_ending(svc, "<local@client.test>", 1013)
    assert events(m) == [1012, 1013], m
    assert m["message_id"] == "<local@client.test>" and m["sender"] == "sender@client.test"
    assert all(e["recipient"] == "alice@example.com" for e in m["events"])

    # Relayed: queued, deferred by the 451, then transferred with the peer's 250.
    [m] = life_ending(svc, "<relay@client.test>", 1011)
    assert events(m) == [1012, 1010, 1100, 1011], m
    deferred, sent = m["events"][2], m["events"][3]
    assert "127.0.0.2" in deferred["remote"] and "127.0.0.2" in sent["remote"], m
    assert deferred["reply"].startswith("451 4.3.0 Try again later"), deferred
    assert sent["reply"].startswith("250"), sent
    assert sent["tls"] == "plain"
    times = [e["time"] for e in m["events"]]
    assert times == sorted(times)

    # Bounced: the 550 on the 1017 line, which names the NDR; the NDR's own life follows.
    ms = wait_for(lambda: (lambda x: x if x and len(x) == 2 and events(x[1])[-1:] == [1013]
                           else None)(life(svc, "--message-id", "bounce@client.test")),
                  "the bounce and its delivered NDR")
    orig, ndr = ms
    assert events(orig) == [1012, 1010, 1017], orig
    report = orig["events"][2]
    assert "550 5.1.1" in report["reply"] and "127.0.0.2" in report["remote"], report
    assert report["recipient"] == "bad@remote.test"
    assert report["report_queue_id"] == ndr["queue_id"]
    assert events(ndr) == [1012, 1013] and ndr["sender"] == "<>", ndr
    assert ndr["events"][1]["recipient"] == "alice@example.com"

    # The text form: one block per message, the events in order with remote and reply.
    p = track(svc, "--id", orig["queue_id"])
    out = p.stdout
    assert out.startswith("Message %s\n" % orig["queue_id"]), out
    assert "Message-ID: <bounce@client.test>" in out
    assert "Message %s" % ndr["queue_id"] in out
    order = [out.index(s) for s in ("1012 Received inbound", "1010 Queued outbound",
                                    "1017 Report generated")]
    assert order == sorted(order), out
    assert re.search(r"1017 Report generated +bad@remote.test +remote \S*127\.0\.0\.2\S* +reply "
                     r"\"550 5\.1\.1", out), out
    assert "report %s" % ndr["queue_id"] in out

    # By sender and by recipient, in a range; the same message.
    today = re.match(r"\d{4}-\d\d-\d\d", orig["events"][0]["time"]).group(0)
    [m] = life(svc, "--recipient", "X@remote.test", "--since", today, "--until", today)
    assert m["message_id"] == "<relay@client.test>"
    got = life(svc, "--sender", "alice@example.com")  # and the NDR, linked from the 1017
    assert [x["queue_id"] for x in got] == [m["queue_id"], orig["queue_id"], ndr["queue_id"]]

    # The index is a cache: deleted, the answer is the same.
    idx = os.path.join(svc.root, "Tracking.log", ".index")
    assert os.listdir(idx)
    # Whoever ran imsctl track (root here, when the tests run as root), the index belongs to
    # the owner of Tracking.log: the service account.
    owner = os.stat(os.path.join(svc.root, "Tracking.log")).st_uid
    for f in [idx] + [os.path.join(idx, n) for n in os.listdir(idx)]:
        assert os.stat(f).st_uid == owner, f
    for f in os.listdir(idx):
        os.unlink(os.path.join(idx, f))
    assert life(svc, "--message-id", "<bounce@client.test>") == ms


def test_track_no_match_and_usage(world):
    svc = world.service(dns=False)
    send(svc, "sender@client.test", ["alice@example.com"], message("one", msgid="<one@c>"))
    wait_for(lambda: life(svc, "--message-id", "<one@c>"), "the message in the log")
    p = track(svc, "--message-id", "<nothing@c>", check=False)
    assert p.returncode == 1 and "no message matched" in p.stderr and p.stdout == ""
    p = track(svc, "--message-id", "<nothing@c>", "--json", check=False)
    assert p.returncode == 1 and json.loads(p.stdout) == []
    # A range in the past: nothing.
    p = track(svc, "--message-id", "<one@c>", "--since", "2001-01-01", "--until", "2001-01-31",
              check=False)
    assert p.returncode == 1
    for args in (["--since", "yesterday"], ["--until", "2024-02-30"], ["--bogus"],
                 ["--json=yes"], ["--id"], ["--id", "A", "--id", "B"], ["extra"],
                 ["--since", "2024-05-02", "--until", "2024-05-01"]):
        p = track(svc, *args, check=False)
        assert p.returncode == 2, (args, p.stdout, p.stderr)
        assert "imsctl: track" in p.stderr or "imsctl:" in p.stderr, p.stderr
    p = track(svc, "--help")
    assert "Usage: imsctl track" in p.stdout


def test_track_old_lines_and_odd_bytes(ims_root, env):
    """Lines as written before the new fields (8 and 9 fields) are read; a field with a quote,
    a backslash and 8-bit bytes still gives JSON that parses. No service: the files alone."""
    d = ims_root / "Tracking.log"
    d.mkdir()
    with open(d / "20240501.log", "wb") as f:
        f.write(b"2024-05-01 13:45:07 GMT\t1012\tOLD1\ta@b\tc@remote\t42\t192.0.2.1\th.test\n"
                b"2024-05-01 13:45:08 GMT\t1010\tOLD1\ta@b\tc@remote\t42\t192.0.2.1\th.test\n"
                b"2024-05-01 13:45:09 GMT\t1011\tOLD1\ta@b\tc@remote\t42\t192.0.2.1\th.test"
                b"\tplain\n"
                b"not a tracking line\n"
                b"2024-05-01 13:46:00 GMT\t1012\tODD\tq\"\\\xe9@b\tc@d\t1\tip\th\t\t\t\t<o@x>\n")
    p = run("imsctl", "track", "--id", "OLD1", "--since", "2024-05-01", "--until", "2024-05-01",
            "--json", env=env)
    [m] = json.loads(p.stdout)
    assert [e["event"] for e in m["events"]] == [1012, 1010, 1011]
    assert m["message_id"] == "" and m["events"][2]["tls"] == "plain"
    p = run("imsctl", "track", "--message-id", "o@x", "--since", "2024-05-01", "--until",
            "2024-05-02", "--json", env=env)
    [m] = json.loads(p.stdout)
    assert m["sender"] == 'q"\\\xe9@b', m
    p = run("imsctl", "track", "--id", "OLD1", "--since", "2024-05-01 13:45:08",
            "--until", "2024-05-01 13:45:08", env=env)
    # One second of range matches one line; the life printed is whole.
    assert p.stdout.startswith("Message OLD1\n") and p.stdout.count(" GMT  10") == 3, p.stdout
    assert "(none)" in p.stdout and "1011 Transferred outbound" in p.stdout

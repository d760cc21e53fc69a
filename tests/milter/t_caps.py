#!/usr/bin/python3
"""The bounds on what one message may make authgate hold (authgate(8),
LIMITS), each exceeded over the milter protocol, with the answer the
manual gives:

  - the header given to DKIM verification: 20,000 fields, 1 MiB; past
    either, the signatures are not evaluated (dkim=neutral, "not
    evaluated: message too costly to verify") and the message goes on;
    resident memory stays flat however large the header;
  - DKIM-Signature fields: up to 1,024 read; an Authentication-Results
    header holds 32 results, and the DMARC result keeps its place however
    many signatures come before it (a regression: with 32 or more it was
    an internal error, 451 4.3.0, for ever);
  - the first From kept for DMARC: 16 KiB; longer is a From that cannot be
    read (On-DMARCFromError: 550 5.7.1);
  - the header kept to sign outbound mail: 1 MiB; past it the message
    cannot be signed (On-SignError: 451 4.3.0);
  - rate counters one message may hold: 1,024; a recipient that needs one
    more gets 452 4.5.3.
"""

import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import agtest  # noqa: E402
from agtest import check, check_eq, diag, open_session  # noqa: E402

SANITIZED = bool(os.environ.get("AG_SANITIZED"))
S = {}
suite = agtest.Suite("milter: per-message bounds", case_timeout=120)

BAD_SIG = "v=1; junk"          # a malformed signature: permerror, no DNS


@suite.setup
def setup():
    agtest.require_authgate()
    ag = S["ag"] = agtest.Authgate(agtest.tmpdir("ag"), conf={"DMARCCheck": "yes"})
    r = ag.ctl("init")
    check("authgatectl init", r.returncode == 0, agtest.fmt_run(r), fatal=True)
    r = ag.ctl("key", "generate", "--domain", "example.org", "--selector", "caps",
               "--dir", agtest.tmpdir("keys"), "--json")
    check("key generate", r.returncode == 0, agtest.fmt_run(r), fatal=True)
    key = json.loads(r.stdout)["key_file"]
    r = ag.ctl("sign", "add", "--domain", "example.org", "--selector", "caps", "--key", key)
    check("sign add", r.returncode == 0, agtest.fmt_run(r), fatal=True)
    ag.add_rule("--match", "sender-domain=rate.example",
                "--rate", "recipients:1000000/1d:rcpt-domain")
    ag.start()


def ag():
    return S["ag"]


def rss_kb():
    return agtest.proc_stats(ag().proc.pid)["rss_kb"]


def send(extra, client="192.0.2.10", sender="alice@example.org", from_=None):
    """A message with the header fields EXTRA before the usual ones;
    returns (transaction, its log line as a dict, the A-R value we add)."""
    mark = ag().log_mark()
    qid = agtest.new_qid()
    c = open_session(ag(), address=client, what="session")
    h, b = agtest.make_message("caps", sender=sender)
    if from_ is not None:
        h = [(k, from_ if k == "From" else v) for k, v in h]
    t = c.transaction("<%s>" % sender, ["<bob@example.net>"], list(extra) + h, b, queue_id=qid)
    c.quit()
    ds = ag().wait_decision(qid=qid, since=mark)
    ar = [m[1][2] for m in t.mods if m[0] == "insheader" and
          m[1][1] == "Authentication-Results"]
    return t, (ds[-1] if ds else {}), (ar[0] if ar else "")


def dkim_field(d):
    return (d.get("dkim") or "").split(":", 1)[0]


@suite.case
def header_field_count():
    sig = [("DKIM-Signature", BAD_SIG)]
    t, d, ar = send(sig + [("X-F%d" % i, "x") for i in range(100)])
    check("100 fields: the signature is evaluated (permerror)", t.accepted and
          dkim_field(d) == "permerror", expected="accepted, dkim=permerror",
          got=(t.final, d.get("line")))
    t, d, ar = send(sig + [("X-F%d" % i, "x") for i in range(20001)])
    check("20,001 fields: accepted, the signature not evaluated (neutral)",
          t.accepted and dkim_field(d) == "neutral", expected="accepted, dkim=neutral",
          got=(t.final, d.get("line")))
    check("Authentication-Results says why", "not evaluated: message too costly" in ar, got=ar)


@suite.case
def header_bytes():
    sig = [("DKIM-Signature", BAD_SIG)]
    t, d, ar = send(sig + [("X-F%d" % i, "y" * 4000) for i in range(200)])
    check("800 KB of header: the signature is evaluated (permerror)",
          t.accepted and dkim_field(d) == "permerror", got=(t.final, d.get("line")))
    t, d, ar = send(sig + [("X-F%d" % i, "y" * 4000) for i in range(300)])
    check("1.2 MB of header: accepted, the signature not evaluated (neutral)",
          t.accepted and dkim_field(d) == "neutral", got=(t.final, d.get("line")))


@suite.case
def memory_flat_whatever_the_header():
    """30 MB of header fields (60 KB each, the most one milter packet
    carries) in one message: libopendkim keeps 1 MiB of it at most.
    Before the bound, resident memory grew by the whole header."""
    before = rss_kb()
    big = [("DKIM-Signature", BAD_SIG)] + [("X-Big-%d" % i, "z" * 60000) for i in range(500)]
    t, d, ar = send(big)
    after = rss_kb()
    diag("resident memory: %d kB before, %d kB after a 30 MB header" % (before, after))
    check("30 MB of header: accepted, not evaluated", t.accepted and dkim_field(d) == "neutral",
          got=(t.final, d.get("line")))
    if SANITIZED:
        diag("resident memory not checked: ASan's quarantine keeps freed memory")
    else:
        check("resident memory grew by less than 10 MB", after - before < 10 * 1024,
              expected="< %d kB" % (before + 10 * 1024), got=after)


@suite.case
def many_signatures_keep_the_dmarc_result():
    for n in (31, 32, 33, 100, 1100):
        t, d, ar = send([("DKIM-Signature", BAD_SIG)] * n)
        ndkim = ar.count("dkim=")
        check("%d signatures: accepted (not 451 4.3.0)" % n, t.accepted, got=t.final)
        check("%d signatures: Authentication-Results has the DMARC result" % n,
              "dmarc=" in ar, got=ar[-300:])
        check("%d signatures: and %d dkim results (32 results in all)" % (n, min(n, 31)),
              ndkim == min(n, 31), expected=min(n, 31), got=ndkim)
        if n > 1024:
            check("%d signatures (over 1,024): none evaluated, each neutral" % n,
                  ar.count('dkim=neutral reason="not evaluated: message too costly') == ndkim,
                  got=ar[:300])
        else:
            check("%d signatures: the first 5 (DKIMMaxSignatures) evaluated (permerror), "
                  "the rest neutral" % n, ar.count("dkim=permerror") == 5 and
                  ar.count('dkim=neutral reason="not evaluated: more than 5') == ndkim - 5,
                  got=ar[:300])
        check("%d signatures: the log line counts them all" % n,
              (d.get("dkim") or "").count(",") + 1 + sum(
                  int(x[1:]) - 1 for x in (d.get("dkim") or "").split(",") if x.startswith("+"))
              == min(n, 1024), expected="%d results" % min(n, 1024), got=d.get("dkim"))


@suite.case
def from_header_length():
    t, d, ar = send([], from_="<%s@example.org>" % ("a" * 16000))
    check("a From of 16 KB: read (not a From error)",
          t.accepted and d.get("reason") != "dmarc-from", got=(t.final, d.get("line")))
    t, d, ar = send([], from_="<%s@example.org>" % ("a" * 17000))
    check("a From of 17 KB: cannot be read, 550 5.7.1 (On-DMARCFromError reject)",
          t.stage == "eom" and t.final.code == "550" and t.final.xcode == "5.7.1" and
          d.get("reason") == "dmarc-from", got=(t.final, d.get("line")))


@suite.case
def header_to_sign():
    t, d, ar = send([("X-F%d" % i, "s" * 4000) for i in range(200)], client="127.0.0.1")
    sigs = [m for m in t.mods if m[0] == "insheader" and m[1][1] == "DKIM-Signature"]
    check("outbound, 800 KB of header: signed", t.accepted and len(sigs) == 1 and
          d.get("sign") == "example.org/caps", got=(t.final, d.get("line")))
    t, d, ar = send([("X-F%d" % i, "s" * 4000) for i in range(300)], client="127.0.0.1")
    check("outbound, 1.2 MB of header: 451 4.3.0 (On-SignError tempfail)",
          t.stage == "eom" and t.final.code == "451" and t.final.xcode == "4.3.0" and
          d.get("sign") == "error", got=(t.final, d.get("line")))


@suite.case
def rate_counters_per_message():
    c = open_session(ag(), what="rate")
    check("MAIL goes on", c.mail("<a@rate.example>").passes, fatal=True)
    replies = [c.rcpt("<bob@d%d.example>" % i) for i in range(1026)]
    c.abort()
    c.quit()
    ok = sum(1 for r in replies if r.passes)
    check_eq("1,024 recipient domains (1,024 counters) go on", ok, 1024)
    r = replies[1024]
    check("the 1,025th gets 452 4.5.3", r.code == "452" and r.xcode == "4.5.3", got=r)


suite.run()

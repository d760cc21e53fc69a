#!/usr/bin/python3
"""Layered rate limits as authgatectl(8) RATE LIMITS shows them: the
example's commands are read from man/authgatectl.8 and run as they are,
except that each limit is made small (a table below maps every --rate
of the page; one it does not know fails the test, so the page and this
test cannot drift apart).  Then, over the milter protocol, each layer
refuses in turn and the log's rate_limit= names its counter: the one
mailbox's own limit, the domain's default per mailbox, the domain's
pool, the ceiling per client /24 (for a sender of another domain); the
exempt sender passes them all, exhausted as they are, and is counted by
none of them."""

import json
import os
import re
import shlex
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import agtest  # noqa: E402
from agtest import check, check_eq, check_decision, open_session  # noqa: E402

suite = agtest.Suite("milter: layered rate limits (the authgatectl(8) example)")
S = {}
MAN = os.path.join(agtest.SRCDIR, "man", "authgatectl.8")

# Every --rate of the man page example, and the small limit that stands in
# for it here.
SMALL = {
    "messages:20/1h:sender": "messages:1/1h:sender",
    "messages:100/1h:sender": "messages:2/1h:sender",
    "recipients:1000/1d:sender": "recipients:10/1d:sender",
    "messages:2000/1h": "messages:4/1h",
    "messages:50/10m:client-ip/24": "messages:6/10m:client-ip/24",
}


def man_example():
    """The commands of the block after 'Limits layer:' in authgatectl(8),
    each as an argument list without 'authgatectl' (troff escapes and
    line continuations undone, comments dropped)."""
    with open(MAN, encoding="utf-8") as f:
        text = f.read()
    m = re.search(r"^Limits layer:.*?^\.nf\n(.*?)^\.fi$", text, re.S | re.M)
    check("authgatectl(8) has the layered example", m is not None, fatal=True)
    block = m.group(1).replace("\\-", "-").replace("\\e\n", " ")
    cmds = []
    for line in block.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            words = shlex.split(line)
            check("example line starts with authgatectl rule add: %s" % line,
                  words[:3] == ["authgatectl", "rule", "add"], fatal=True)
            cmds.append(words[1:])
    return cmds


@suite.setup
def setup():
    agtest.require_authgate()
    ag = agtest.Authgate(agtest.tmpdir("ag"), conf={"RateCheckpointInterval": "3600"})
    S["ag"] = ag
    r = ag.ctl("init")
    check("authgatectl init", r.returncode == 0, agtest.fmt_run(r), fatal=True)
    ids = S["ids"] = {}
    for args in man_example():
        args = list(args)
        for i, a in enumerate(args):
            if i > 0 and args[i - 1] == "--rate":
                check("the test knows the page's --rate %s" % a, a in SMALL, fatal=True)
                args[i] = SMALL[a]
        prio = args[args.index("--priority") + 1]
        ids[prio] = ag.add_rule(*args[2:])
    check_eq("the example has five rules", sorted(ids, key=int),
             ["10", "15", "20", "30", "1000"], fatal=True)
    ag.start()


def rid(prio):
    return S["ids"][prio]


def send(sender, client):
    c = open_session(S["ag"], address=client)
    h, b = agtest.make_message("layers", sender=sender.strip("<>"))
    t = c.transaction(sender, ["<bob@example.net>"], h, b, queue_id=agtest.new_qid())
    c.quit()
    return t


def accepted(sender, client, n, what):
    for i in range(1, n + 1):
        t = send(sender, client)
        check("%s: %s from %s, message %d accepted" % (what, sender, client, i),
              t.accepted, got=t)


def refused_by(sender, client, key, prio, what):
    """The next message of SENDER from CLIENT: 451 4.7.1 at MAIL FROM, and
    the log line names rule PRIO's counter KEY."""
    d = S["ag"]
    mark = d.log_mark()
    t = send(sender, client)
    r = t.final
    check("%s: the next from %s gets 451 4.7.1 at MAIL FROM" % (what, sender),
          t.stage == "mail" and r is not None and r.code == "451" and r.xcode == "4.7.1",
          expected="replycode 451 4.7.1", got=t)
    check_decision(d, "NOQUEUE", "tempfail", rule=rid(prio), reason="rate", since=mark,
                   what="%s: log line" % what,
                   extra={"rate_limit": "%s.1:%s" % (rid(prio), key)})


def used(key):
    """The used count of counter KEY (exact), or None."""
    r = S["ag"].ctl("counters", "list", "--json", "--key", key)
    try:
        data = json.loads(r.stdout) if r.returncode == 0 else None
    except ValueError:
        data = None
    mine = [e for e in data or [] if e.get("key") == key]
    return mine[0].get("used") if mine else None


@suite.case
def each_layer_refuses_in_turn():
    # 1: the one mailbox (limit 1) under the domain default (limit 2)
    accepted("<newsletter@example.com>", "192.0.2.10", 1, "mailbox")
    refused_by("<newsletter@example.com>", "192.0.2.10",
               "sender=newsletter@example.com", "15", "mailbox limit")
    # 2: the domain's default for each mailbox
    accepted("<alice@example.com>", "198.51.100.10", 2, "default")
    refused_by("<alice@example.com>", "198.51.100.10",
               "sender=alice@example.com", "20", "domain default")
    # 3: the pool (limit 4) holds 3 by now: newsletter 1, alice 2
    check_eq("the pool: used 3 (refused messages gave theirs back)",
             used("%s.1:pool" % rid("30")), 3)
    accepted("<bob@example.com>", "203.0.113.10", 1, "pool")
    refused_by("<bob@example.com>", "203.0.113.10", "pool", "30", "domain pool")
    check_eq("bob's own counter: used 1", used("%s.1:sender=bob@example.com" % rid("20")), 1)
    # 4: the ceiling (6 per /24) for a sender no other rule matches
    for ip in ("192.0.3.10", "192.0.3.11"):
        accepted("<carol@example.org>", ip, 3, "ceiling")
    refused_by("<carol@example.org>", "192.0.3.12", "client-ip=192.0.3.0/24", "1000",
               "global ceiling")
    # the ceiling counts example.com's mail too
    check_eq("the ceiling counted alice's 2 from 198.51.100.0/24",
             used("%s.1:client-ip=198.51.100.0/24" % rid("1000")), 2)


@suite.case
def the_exempt_sender_passes_every_layer():
    d = S["ag"]
    mark = d.log_mark()
    # the pool and the ceiling of 192.0.3.0/24 are spent; 8 is over
    # every limit of the example
    accepted("<ceo@example.com>", "192.0.3.10", 8, "exempt")
    refusals = [ln for ln in d.log_lines()[mark:] if "rate_limit=" in ln]
    check_eq("no rate refusal logged for the exempt sender", refusals, [])
    check("counted by none: no counter of ceo@example.com",
          used("%s.1:sender=ceo@example.com" % rid("20")) is None and
          used("%s.1:sender=ceo@example.com" % rid("15")) is None)
    check_eq("the pool still used 4", used("%s.1:pool" % rid("30")), 4)
    check_eq("the ceiling of 192.0.3.0/24 still used 6",
             used("%s.1:client-ip=192.0.3.0/24" % rid("1000")), 6)
    t = send("<dave@example.com>", "192.0.3.13")
    check("and a sender of the domain from there is still refused", t.stage == "mail" and
          t.final is not None and t.final.code == "451", got=t)


suite.run()

#!/usr/bin/python3
"""Forged Authentication-Results headers over the milter protocol: every
incoming Authentication-Results whose authserv-id is ours (case ignored,
after comments, folded, quoted), or named in AuthservIDStrip, or that
cannot be read at all, must be deleted at the end of the message; the
others are kept; ours is inserted at the top.

What is checked is what the MTA is told to do: the modification actions at
end of message.  Deletions are SMFIR_CHGHEADER with an empty value and an
index that counts only the Authentication-Results fields (1 = the first),
sent last first, so that no deletion shifts the index of one still to
come (CVE-2022-48521 was about forward deletion letting copies survive);
each forged header exactly once; all of them before our own header is
inserted (SMFIR_INSHEADER index 0), since that insert would shift every
index by one.  The actions are then applied to the header list the way an
MTA does, in order, and the resulting header block is checked too: ours
on top, no forged one left, every foreign one kept in its order.  The
decision log line carries forged_ar=N."""

import os
import re
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import agtest  # noqa: E402
from agtest import check, check_eq, diag, new_qid  # noqa: E402

suite = agtest.Suite("milter: forged Authentication-Results removed")
S = {}

AUTHSERV = "mx.test.invalid"
STRIP = ("mx2.test.invalid", "MX3.Test.Invalid")   # AuthservIDStrip (comma-separated)
CLIENT = "192.0.2.10"
AR = "Authentication-Results"


@suite.setup
def setup():
    agtest.require("authres", "module")
    agtest.require_authgate()
    # DNSServer stays the harness's dead 127.0.0.1@9: the messages here are
    # unsigned, nothing is looked up (dkim=none).
    ag = agtest.Authgate(agtest.tmpdir("ag"), conf={
        "AuthservIDStrip": ", ".join(STRIP)})
    r = ag.ctl("init")
    check("authgatectl init", r.returncode == 0, agtest.fmt_run(r), fatal=True)
    S["ag"] = ag
    ag.start()


def ag():
    return S["ag"]


# ---------------------------------------------------------------------------


def is_ar(name):
    return name.lower() == AR.lower()


def apply_mods(headers, mods):
    """HEADERS (list of (name, value)) after the modification actions MODS,
    applied in order the way Postfix and Sendmail do: chgheader INDEX
    counts the fields of that name (case ignored) from 1, an empty value
    deletes; insheader INDEX 0 puts a field at the top; addheader at the
    end.  Returns (headers, problems)."""
    out = list(headers)
    problems = []
    for name, args in mods:
        if name == "chgheader":
            idx, hname, value = args
            pos = [i for i, (n, _) in enumerate(out) if n.lower() == hname.lower()]
            if not 1 <= idx <= len(pos):
                problems.append("chgheader %s index %d: only %d such fields" %
                                (hname, idx, len(pos)))
                continue
            if value == "":
                del out[pos[idx - 1]]
            else:
                out[pos[idx - 1]] = (out[pos[idx - 1]][0], value)
        elif name == "insheader":
            idx, hname, value = args
            out.insert(min(idx, len(out)), (hname, value))
        elif name == "addheader":
            out.append((args[0], args[1]))
    return out, problems


class Run:
    tx = None
    log = None
    mods = ()
    deletes = ()
    inserted = ()


def send(extra, what, auth=None, client=CLIENT):
    """One message whose header block is the usual fields with EXTRA
    (list of (name, value)) among them: EXTRA first, then From, To, ...
    Returns a Run with the transaction, the A-R deletions (indices, in the
    order sent), our inserted A-R values and the decision log line."""
    a = ag()
    run = Run()
    mark = a.log_mark()
    qid = new_qid()
    h, b = agtest.make_message("forged-ar", sender="alice@example.org")
    run.headers = list(extra) + h
    c = agtest.open_session(a, address=client, what=what)
    try:
        run.tx = c.transaction("<alice@example.org>", ["<bob@example.net>"], run.headers, b,
                               queue_id=qid, auth=auth)
    finally:
        c.close()
    check("%s: accepted" % what, run.tx.accepted, expected="accept/continue at eom",
          got=run.tx, fatal=True)
    run.mods = run.tx.mods
    run.deletes = [m[1][0] for m in run.mods
                   if m[0] == "chgheader" and is_ar(m[1][1]) and m[1][2] == ""]
    run.inserted = [m[1] for m in run.mods if m[0] in ("insheader", "addheader") and
                    is_ar(m[1][-2])]
    ds = a.wait_decision(qid=qid, since=mark, timeout=5)
    run.log = ds[-1] if ds else None
    check("%s: a decision log line" % what, run.log is not None,
          got="\n".join(a.log_lines()[mark:][-10:]))
    return run


def expect(extra, forged, what, auth=None, dkim_none=True):
    """Send EXTRA; FORGED: the positions (0-based, in EXTRA) of the fields
    that must go.  Checks the deletions, our header, the header block
    after the actions and the log line."""
    run = send(extra, what, auth=auth)
    # 1-based index among the Authentication-Results fields of the message
    ar_index = {}
    n = 0
    for i, (name, _) in enumerate(run.headers):
        if is_ar(name):
            n += 1
            ar_index[i] = n
    want = sorted((ar_index[i] for i in forged), reverse=True)
    check_eq("%s: Authentication-Results deleted (indices among A-R fields, last first)" % what,
             run.deletes, want, detail="modifications: %r" % (run.mods,))
    check("%s: each deleted exactly once" % what, len(run.deletes) == len(set(run.deletes)),
          got=run.deletes)
    other = [m for m in run.mods if m[0] == "chgheader" and
             not (is_ar(m[1][1]) and m[1][2] == "")]
    check("%s: no other header changed" % what, not other, got=other)
    # ours: one, at the top, after every deletion
    check("%s: one Authentication-Results of ours inserted at index 0" % what,
          len(run.inserted) == 1 and run.mods and
          any(m[0] == "insheader" and is_ar(m[1][1]) and m[1][0] == 0 for m in run.mods),
          got=run.mods)
    pos_ins = [i for i, m in enumerate(run.mods) if m[0] == "insheader" and is_ar(m[1][1])]
    pos_del = [i for i, m in enumerate(run.mods) if m[0] == "chgheader" and is_ar(m[1][1])]
    check("%s: every deletion comes before our insert (it would shift the indices)" % what,
          not pos_ins or not pos_del or max(pos_del) < min(pos_ins), got=run.mods)
    if run.inserted:
        try:
            sid, res = agtest.authres_results(run.inserted[0][-1])
            check_eq("%s: our header's authserv-id" % what, sid, AUTHSERV)
            methods = [(m, r) for m, r, _, _ in res]
            if dkim_none:
                check("%s: our header reports dkim=none (unsigned message)" % what,
                      ("dkim", "none") in methods, got=run.inserted[0][-1])
        except Exception as e:
            check("%s: our header parses (python3-authres)" % what, False,
                  got="%r: %r" % (run.inserted[0][-1], e))
    # the header block the next hop sees
    after, problems = apply_mods(run.headers, run.mods)
    check("%s: every action applies to the message" % what, not problems, got=problems)
    ars = [(n, v) for n, v in after if is_ar(n)]
    kept = [run.headers[i] for i in range(len(extra))
            if is_ar(run.headers[i][0]) and i not in forged]
    check("%s: after the actions: ours first, then the foreign ones, in order" % what,
          after and is_ar(after[0][0]) and ars[1:] == kept and
          ars[:1] == [(AR, run.inserted[0][-1])] if run.inserted else False,
          expected=["(ours)"] + [_short(v) for _, v in kept],
          got=[_short(v) for _, v in ars])
    non_ar = [(n, v) for n, v in run.headers if not is_ar(n)]
    check("%s: the other fields are untouched" % what,
          [(n, v) for n, v in after if not is_ar(n)] == non_ar)
    if run.log:
        if forged:
            check_eq("%s: log forged_ar=" % what, run.log.get("forged_ar"), str(len(forged)),
                     detail=run.log["line"])
        else:
            check("%s: no forged_ar= in the log line" % what, "forged_ar" not in run.log,
                  got=run.log["line"])
    return run


def _short(v, n=60):
    v = v.replace("\n", "\\n").replace("\t", "\\t")
    return v if len(v) <= n else v[:n] + "...(%d)" % len(v)


def ours(rest="dkim=pass header.d=paypal.com", aid=AUTHSERV):
    return (AR, "%s; %s" % (aid, rest))


def foreign(aid="relay.example.net", rest="spf=pass smtp.mailfrom=example.org"):
    return (AR, "%s; %s" % (aid, rest))


# ---------------------------------------------------------------------------
# Cases


@suite.case
def no_authentication_results():
    run = expect([], [], "no incoming A-R")
    check("no incoming A-R: no deletion at all", not run.deletes, got=run.mods)


@suite.case
def one_forged():
    expect([ours()], [0], "one forged copy")


@suite.case
def two_forged():
    expect([ours(), ours("spf=pass smtp.mailfrom=paypal.com")], [0, 1], "two forged copies")


@suite.case
def five_forged_among_foreign():
    extra = [ours("dkim=pass header.d=a.example"), foreign(),
             ours("dkim=pass header.d=b.example"), ours("dkim=pass header.d=c.example"),
             foreign("other.example.org", "dkim=fail"), ours("dmarc=pass"),
             ("Received", "from x by y; Mon, 1 Jan 2024 00:00:00 +0000"),
             ours("arc=pass")]
    expect(extra, [0, 2, 3, 5, 7], "five forged among two foreign")
    # the same with the foreign ones last and first
    extra = [foreign("first.example")] + [ours("spf=pass x.y=%d" % i) for i in range(5)] + \
        [foreign("last.example")]
    expect(extra, [1, 2, 3, 4, 5], "five forged between two foreign")


@suite.case
def case_of_the_id_ignored():
    expect([ours(aid="MX.TEST.INVALID"), ours(aid="Mx.Test.Invalid"), foreign()],
           [0, 1], "upper and mixed case")
    # and the field name's case
    expect([("authentication-results", "%s; spf=pass" % AUTHSERV),
            ("AUTHENTICATION-RESULTS", "%s; spf=pass" % AUTHSERV.upper()), foreign()],
           [0, 1], "field name in lower and upper case")


@suite.case
def folded():
    extra = [(AR, "\n\t%s;\n\tdkim=pass header.d=paypal.com" % AUTHSERV),
             (AR, "%s\n ;\n dkim=pass\n header.d=paypal.com" % AUTHSERV),
             (AR, "\r\n %s; spf=pass" % AUTHSERV),
             (AR, "relay.example.net;\n\tspf=pass smtp.mailfrom=example.org")]
    expect(extra, [0, 1, 2], "folded before, inside and after the id")


@suite.case
def comments_before_the_id():
    extra = [(AR, "(forged) %s; spf=pass" % AUTHSERV),
             (AR, "(a (nested (twice)) comment)%s; spf=pass" % AUTHSERV),
             (AR, "(with \\) and \\( quoted)\n\t %s; spf=pass" % AUTHSERV),
             (AR, "(one)(two) (three)\t%s (after); spf=pass" % AUTHSERV),
             (AR, "(%s) relay.example.net; spf=pass" % AUTHSERV)]
    expect(extra, [0, 1, 2, 3], "comments before the id")


@suite.case
def quoted_id():
    expect([(AR, '"%s"; spf=pass' % AUTHSERV), (AR, '"MX.test.INVALID"; spf=pass'),
            (AR, '"relay.example.net"; spf=pass')], [0, 1], "the id as a quoted-string")


@suite.case
def version_after_the_id():
    expect([(AR, "%s 1; spf=pass" % AUTHSERV), (AR, "%s (c) 1 ; spf=pass" % AUTHSERV)],
           [0, 1], "an authres-version after the id")


@suite.case
def look_alikes_kept():
    extra = [foreign(AUTHSERV + ".evil.example"), foreign("x." + AUTHSERV),
             foreign(AUTHSERV + "-2"), foreign("mx.test.invalid2"),
             foreign("relay.example.net", "dkim=pass (%s) header.d=x" % AUTHSERV),
             foreign("relay.example.net (%s)" % AUTHSERV),
             foreign("mx.test", "spf=pass")]
    expect(extra, [], "ids that only look like ours")


@suite.case
def over_4kb():
    big = ours("dkim=pass header.d=paypal.com " + " ".join(
        "x%d.y=%s" % (i, "z" * 40) for i in range(100)))
    check("the forged value is over 4 KB", len(big[1]) > 4096, got=len(big[1]))
    bigf = foreign(rest="spf=pass " + " ".join("x%d.y=%s" % (i, "z" * 40) for i in range(100)))
    expect([big, bigf, ours()], [0, 2], "one forged copy over 4 KB beside a foreign one")
    long_comment = (AR, "(" + "c" * 5000 + ") %s; spf=pass" % AUTHSERV)
    expect([long_comment], [0], "a 5 KB comment before the id")


@suite.case
def twenty_results():
    rest = "; ".join("dkim=pass header.d=d%d.example header.s=s%d" % (i, i) for i in range(20))
    expect([ours(rest), foreign(rest=rest)], [0], "a forged copy with 20 results")


@suite.case
def authservid_strip():
    extra = [ours(aid="mx2.test.invalid"), ours(aid="mx3.test.invalid"),
             ours(aid="MX2.TEST.INVALID"), foreign("mx4.test.invalid"),
             foreign("mx2.test.invalid.example")]
    expect(extra, [0, 1, 2], "AuthservIDStrip ids (mx2, MX3 in the configuration)")


@suite.case
def unreadable_removed():
    extra = [(AR, "(unbalanced %s; spf=pass" % AUTHSERV),
             foreign(),
             (AR, "(unbalanced relay.example.net; spf=pass"),
             (AR, ""),
             (AR, "; spf=pass"),
             (AR, '"unterminated; spf=pass'),
             (AR, "(((( " * 50),
             (AR, "(ends in a quoted-pair \\")]
    expect(extra, [0, 2, 3, 4, 5, 6, 7], "authserv-id unreadable")


@suite.case
def value_of_60kb_and_100kb():
    """Postfix with a milter cuts a header field at about 60 KB (measured
    here: a 70 KB or 100 KB field reaches the milter, and the next hop, as
    some 60,000 bytes), and libmilter refuses any command over 64 KB.  So: a 60 KB value is taken
    and removed (or kept, when foreign); a 100 KB value in one packet, which
    no MTA here sends, ends the connection in libmilter (the MTA then
    applies its milter default action) or is handled like the 60 KB one;
    either way the daemon lives on."""
    def filler(n):
        return " ".join("x%d.y=%s" % (i, "z" * 90) for i in range(n))
    big_ours = ours("dkim=pass " + filler(600))
    big_foreign = foreign(rest="dkim=pass " + filler(600))
    check("the 60 KB values are 55-64 KB", 55000 < len(big_ours[1]) < 65000,
          got=len(big_ours[1]))
    expect([big_ours], [0], "a forged copy of 60 KB")
    expect([big_foreign, ours()], [1], "a foreign one of 60 KB and a forged one")
    huge = ours("dkim=pass " + filler(1000))
    check("the 100 KB value is 95-100 KB", 95000 < len(huge[1]) <= 102400, got=len(huge[1]))
    mark = ag().log_mark()
    c = agtest.open_session(ag(), address=CLIENT, what="100 KB")
    h, b = agtest.make_message("forged-ar", sender="alice@example.org")
    try:
        t = c.transaction("<alice@example.org>", ["<bob@example.net>"], [huge] + h, b,
                          queue_id=new_qid())
        outcome = t
    except (OSError, agtest_milter_errors()) as e:
        outcome = "closed: %r" % (e,)
    finally:
        c.close()
    diag("100 KB value in one packet: %r" % (outcome,))
    if isinstance(outcome, str):
        check("100 KB: connection ended by the filter (libmilter's 64 KB command limit)",
              True)
    else:
        dels = [m[1][0] for m in outcome.mods if m[0] == "chgheader" and is_ar(m[1][1])]
        check("100 KB: taken, and the forged copy deleted (index 1)",
              outcome.accepted and dels == [1], got=outcome)
    check("100 KB: the daemon is still running", ag().alive(),
          got=agtest.tail(ag().log_path, 10))
    check("100 KB: nothing logged as an internal error or crash",
          not [ln for ln in ag().log_lines()[mark:] if re.search(
              r"(?i)internal error|assert|abort\(|segmentation", ln)],
          got="\n".join(ag().log_lines()[mark:]))
    expect([ours()], [0], "a normal message after the 100 KB one")


def agtest_milter_errors():
    import milterclient
    return milterclient.MilterError


@suite.case
def many_copies():
    extra = []
    forged = []
    for i in range(60):
        if i % 3 == 1:
            extra.append(foreign("relay%d.example.net" % i))
        else:
            forged.append(len(extra))
            extra.append(ours("spf=pass n.n=%d" % i))
    expect(extra, forged, "40 forged and 20 foreign, interleaved")


@suite.case
def more_copies_than_the_daemon_remembers():
    """8,300 forged copies (Postfix passes that many to a milter: no limit
    on the number of header fields applies; measured, 9,000 one-line copies
    all reached the filter).  Every one must go: a copy left in the message
    is a forged result the next hop believes."""
    n = 8300
    extra = [foreign("first.example")] + [ours("n.n=%d" % i) for i in range(n)] + \
        [foreign("last.example")]
    run = send(extra, "%d forged copies" % n)
    got = set(run.deletes)
    want = set(range(2, n + 2))
    missing = sorted(want - got)
    check("%d forged copies: every one deleted" % n, not missing,
          expected="%d deletions (A-R indices 2..%d)" % (n, n + 1),
          got="%d deletions; %d forged copies left in the message, A-R indices %s..%s" % (
              len(run.deletes), len(missing), missing[0] if missing else "-",
              missing[-1] if missing else "-"))
    check("%d forged copies: the foreign ones (1 and %d) kept" % (n, n + 2),
          1 not in got and n + 2 not in got)
    check("%d forged copies: deletions last first, each once" % n,
          run.deletes == sorted(got, reverse=True), got=run.deletes[:10])
    if run.log:
        check_eq("%d forged copies: log forged_ar=%d" % (n, n), run.log.get("forged_ar"),
                 str(n), detail=run.log["line"][:300])


@suite.case
def authenticated_client_too():
    """Our header also carries auth=pass then; forged ones go all the
    same."""
    run = expect([ours("auth=pass smtp.auth=admin"), foreign()], [0],
                 "SASL-authenticated client", auth="user", dkim_none=False)
    if run.inserted:
        check("authenticated: our header says auth=pass smtp.auth=user",
              re.search(r"\bauth=pass\b.*smtp\.auth=user", agtest.unfold(run.inserted[0][-1]))
              is not None, got=run.inserted[0][-1])


@suite.case
def still_running():
    check("authgate still running after every case", ag().alive())
    expect([ours()], [0], "a last message")


suite.run()

#!/usr/bin/python3
"""Size and recipient limits over the milter protocol: SIZE= at MAIL FROM,
the real size at end of message, max-rcpts at RCPT, malformed and huge
SIZE= values, rule precedence and matching, live rule changes, dry run."""

import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import agtest  # noqa: E402
from agtest import check, check_eq, check_decision, new_qid, open_session  # noqa: E402

suite = agtest.Suite("milter: size and recipient limits")
S = {}


@suite.setup
def setup():
    agtest.require_authgate()
    ag = agtest.Authgate(agtest.tmpdir("ag"))
    S["ag"] = ag
    r = ag.ctl("init")
    check("authgatectl init", r.returncode == 0, agtest.fmt_run(r), fatal=True)
    R = S["rules"] = {}
    R["size"] = ag.add_rule("--priority", "50", "--match", "sender-domain=size.example",
                            "--max-size", "10k", "--comment", "size tests")
    R["rcpt"] = ag.add_rule("--priority", "50", "--match", "sender-domain=rcpt.example",
                            "--max-rcpts", "2")
    R["huge"] = ag.add_rule("--priority", "50", "--match", "sender-domain=huge.example",
                            "--max-size", "1M")
    R["bound"] = ag.add_rule("--priority", "50", "--match", "sender-domain=bound.example",
                             "--max-size", "100000")
    R["prio_hi"] = ag.add_rule("--priority", "10", "--match", "sender-domain=prio.example",
                               "--max-size", "100k")
    R["prio_lo"] = ag.add_rule("--priority", "20", "--match", "sender-domain=prio.example",
                               "--max-size", "5k")
    R["rcptonly"] = ag.add_rule("--priority", "5", "--match", "sender-domain=prio.example",
                                "--max-rcpts", "10")
    R["tie_a"] = ag.add_rule("--priority", "30", "--match", "sender-domain=tie.example",
                             "--max-size", "5k")
    R["tie_b"] = ag.add_rule("--priority", "30", "--match", "sender-domain=tie.example",
                             "--max-size", "100k")
    R["disabled"] = ag.add_rule("--priority", "1", "--match", "sender-domain=disabled.example",
                                "--max-size", "1k", "--disabled")
    R["sasl"] = ag.add_rule("--priority", "50", "--match", "sasl-user=limited-user",
                            "--max-size", "1k")
    R["cidr"] = ag.add_rule("--priority", "50", "--match", "client=198.51.100.0/24",
                            "--max-size", "1k")
    ag.start()


def ag():
    return S["ag"]


def rule(name):
    return S["rules"][name]


def mail_reply(sender, *args, client="192.0.2.10", auth=None):
    """A fresh session, MAIL FROM with ARGS; returns the MAIL reply."""
    c = open_session(ag(), address=client)
    r = c.mail(sender, *args, auth=auth)
    c.close()
    return r


def send(sender, size, rcpts=("<bob@example.net>",), mail_args=(), client="192.0.2.10",
         extra_headers=(), qid=None):
    c = open_session(ag(), address=client)
    h, b = agtest.make_message("limits", size=size, sender=sender.strip("<>"),
                               extra_headers=extra_headers)
    t = c.transaction(sender, list(rcpts), h, b, mail_args=mail_args, queue_id=qid)
    c.quit()
    return t


def size_refused(t):
    """The real size over the limit: 552 5.3.4 at the first body chunk
    that crosses it or at end of message (the MTA gives it to the client
    after DATA either way)."""
    return t.stage in ("body", "eom") and is_552(t.final)


def is_552(r):
    return (not isinstance(r, str)) and r is not None and r.code == "552" and r.xcode == "5.3.4"


@suite.case
def size_param_over_limit_rejected_at_mail():
    mark = ag().log_mark()
    r = mail_reply("<a@size.example>", "SIZE=20000")
    check("SIZE=20000 over 10k: 552 5.3.4 at MAIL FROM", is_552(r),
          expected="replycode 552 5.3.4 ...", got=r)
    check_decision(ag(), "NOQUEUE", "reject", rule=rule("size"), since=mark)
    r = mail_reply("<a@size.example>", "SIZE=5000")
    check("SIZE=5000 under 10k: MAIL goes on", r.passes, got=r)
    r = mail_reply("<a@other.example>", "SIZE=20000")
    check("SIZE=20000 from a domain with no rule: MAIL goes on", r.passes, got=r)


@suite.case
def real_size_over_limit_rejected_at_eom():
    mark = ag().log_mark()
    qid = new_qid()
    t = send("<a@size.example>", 20000, qid=qid)
    check("20 KB without SIZE=: 552 5.3.4 in body or at end of message",
          size_refused(t), expected="body/eom replycode 552 5.3.4", got=t)
    check_decision(ag(), qid, "reject", rule=rule("size"), since=mark)
    t = send("<a@size.example>", 4000)
    check("4 KB: accepted", t.accepted, got=t)


@suite.case
def content_steps_are_not_waited_for():
    """Postfix offers no-reply for header, end-of-headers and body steps;
    the daemon takes it (one round trip less per step).  A size refusal
    found in the body is then held and given at end of message (an MTA
    cannot refuse before the end of DATA anyway), once, with the rest of
    the body ignored.  An MTA that does not offer no-reply gets it at the
    body chunk, as before."""
    import milterclient
    c = ag().client()
    ver, actions, proto = c.negotiate()
    for name in ("NR_HDR", "NR_EOH", "NR_BODY"):
        check("daemon asks for SMFIP_%s" % name,
              proto & getattr(milterclient, "SMFIP_" + name) != 0, got=hex(proto))
    c.close()
    mark = ag().log_mark()
    qid = new_qid()
    c = open_session(ag())
    c.set_queue_id(qid)
    h, b = agtest.make_message("held", size=150000, sender="a@size.example")
    check("MAIL", c.mail("<a@size.example>").passes)
    check("RCPT", c.rcpt("<bob@example.net>").passes)
    c.data()
    for k, v in h:
        c.header(k, v)
    check_eq("end of headers: no reply", c.eoh().name, "noreply")
    check_eq("150 KB body (3 chunks, over 10k in the first): no reply",
             c.body(b).name, "noreply")
    mods, r = c.eom()
    check("end of message: 552 5.3.4", is_552(r), got=r)
    check_eq("no header edits with the refusal", mods, [])
    check_decision(ag(), qid, "reject", rule=rule("size"), since=mark)
    lines = [ln for ln in ag().log_lines() if qid + ":" in ln]
    check_eq("one log line for the message", len(lines), 1, detail=lines)
    check("no protocol error for the chunks after the refusal",
          not any("protocol" in ln for ln in ag().log_lines()),
          detail=ag().log_lines()[-20:])
    # the same connection goes on with the next message
    c.abort()
    h, b = agtest.make_message("after held", size=2000, sender="a@size.example")
    t = c.transaction("<a@size.example>", ["<bob@example.net>"], h, b)
    check("next message on the connection accepted", t.accepted, got=t)
    c.quit()
    # an MTA that offers no no-reply flags: libmilter offers them to the
    # daemon anyway and answers "continue" in its place, so the refusal
    # comes at end of message there too, and the message is refused once
    c = ag().client()
    c.negotiate(protocol=milterclient.POSTFIX_PROTOCOL & ~(
        milterclient.SMFIP_NR_HDR | milterclient.SMFIP_NR_EOH | milterclient.SMFIP_NR_BODY |
        milterclient.SMFIP_NR_CONN | milterclient.SMFIP_NR_HELO))
    c.connect("client.example", "4", 40000, "192.0.2.10")
    c.helo("client.example")
    h, b = agtest.make_message("no nr", size=150000, sender="a@size.example")
    t = c.transaction("<a@size.example>", ["<bob@example.net>"], h, b)
    check("without no-reply: continue to the body, 552 5.3.4 at end of message",
          t.stage == "eom" and is_552(t.final) and t.mods == [], got=t)
    c.quit()


@suite.case
def size_param_understated():
    t = send("<a@size.example>", 20000, mail_args=["SIZE=100"])
    check("SIZE=100 but 20 KB sent: 552 5.3.4 in body or at end of message",
          size_refused(t), got=t)


@suite.case
def headers_count_toward_size():
    # 9,000 bytes of body is under 10k; with 3,000 bytes of headers it is not.
    big_header = [("X-Padding-%d" % i, "p" * 290) for i in range(10)]
    t = send("<a@size.example>", 9000, extra_headers=big_header)
    check("9 KB body + 3 KB headers over 10k: 552 5.3.4", size_refused(t),
          expected="body/eom replycode 552 5.3.4 (size = headers + body)", got=t)
    t = send("<a@size.example>", 9000)
    check("9 KB body with small headers: accepted", t.accepted, got=t)


@suite.case
def recipient_limit():
    mark = ag().log_mark()
    c = open_session(ag())
    qid = new_qid()
    c.set_queue_id(qid)
    check("MAIL goes on", c.mail("<a@rcpt.example>").passes)
    rs = [c.rcpt("<r%d@example.net>" % i) for i in range(1, 5)]
    check("RCPT 1 goes on", rs[0].passes, got=rs[0])
    check("RCPT 2 goes on", rs[1].passes, got=rs[1])
    for i in (2, 3):
        r = rs[i]
        check("RCPT %d over max-rcpts 2: 452 4.5.3" % (i + 1),
              r.code == "452" and r.xcode == "4.5.3", expected="replycode 452 4.5.3", got=r)
    c.data()
    h, b = agtest.make_message("rcpts", sender="a@rcpt.example")
    for k, v in h:
        c.header(k, v)
    c.eoh()
    c.body(b)
    mods, r = c.eom()
    check("the message goes on to the first two: accepted at end",
          r.kind in ("accept", "continue"), got=r)
    c.quit()
    d = check_decision(ag(), qid, "accept", since=mark)
    if d:
        check_eq("log counts the 2 kept recipients", d.get("rcpts"), "2")


@suite.case
def malformed_size_values():
    for v in ("abc", "-1", "", "12x", "0x10", "1e5", " 5"):
        for sender in ("<a@size.example>", "<a@other.example>"):
            r = mail_reply(sender, "SIZE=" + v)
            check("SIZE=%r from %s: 501 5.5.4" % (v, sender),
                  r.code == "501" and r.xcode == "5.5.4", expected="replycode 501 5.5.4", got=r)


@suite.case
def huge_size_values():
    for v in ("18446744073709551616", "18446744073709551615", "1" + "0" * 30,
              "99999999999999999999999999999999999999999999"):
        r = mail_reply("<a@huge.example>", "SIZE=" + v)
        check("SIZE=%s with max-size 1M: 552 5.3.4" % (v if len(v) < 25 else v[:10] + "..."),
              is_552(r), expected="replycode 552 5.3.4", got=r)
    r = mail_reply("<a@huge.example>", "SIZE=0")
    check("SIZE=0: MAIL goes on", r.passes, got=r)
    r = mail_reply("<a@huge.example>", "SIZE=1000")
    check("SIZE=1000: MAIL goes on", r.passes, got=r)


@suite.case
def size_limit_boundary():
    r = mail_reply("<a@bound.example>", "SIZE=100000")
    check("SIZE equal to max-size 100000: MAIL goes on", r.passes, got=r)
    r = mail_reply("<a@bound.example>", "SIZE=100001")
    check("SIZE one over max-size 100000: 552 5.3.4", is_552(r), got=r)


@suite.case
def lower_priority_number_wins():
    mark = ag().log_mark()
    qid = new_qid()
    t = send("<a@prio.example>", 50000, qid=qid)
    check("priority 10 (100k) beats priority 20 (5k): 50 KB accepted", t.accepted, got=t)
    r = mail_reply("<a@prio.example>", "SIZE=200000")
    check("over the priority-10 limit: 552", is_552(r), got=r)
    mark = ag().log_mark()
    r = mail_reply("<a@prio.example>", "SIZE=200000")
    check_decision(ag(), "NOQUEUE", "reject", rule=rule("prio_hi"), since=mark,
                   what="the deciding rule is the priority-10 one")


@suite.case
def same_priority_lower_id_wins():
    r = mail_reply("<a@tie.example>", "SIZE=50000")
    check("same priority: the lower id (5k) decides: SIZE=50000 gets 552", is_552(r),
          expected="552 5.3.4 from rule %s" % rule("tie_a"), got=r)


@suite.case
def disabled_rule_ignored():
    t = send("<a@disabled.example>", 5000)
    check("a disabled 1k rule does not stop 5 KB", t.accepted, got=t)


@suite.case
def sasl_user_rule():
    r = mail_reply("<a@other.example>", "SIZE=5000", auth="limited-user")
    check("{auth_authen}=limited-user, SIZE=5000 over its 1k: 552", is_552(r), got=r)
    r = mail_reply("<a@other.example>", "SIZE=5000", auth="someone-else")
    check("another SASL user: MAIL goes on", r.passes, got=r)
    r = mail_reply("<a@other.example>", "SIZE=5000")
    check("no SASL login: MAIL goes on", r.passes, got=r)


@suite.case
def client_cidr_rule():
    r = mail_reply("<a@other.example>", "SIZE=5000", client="198.51.100.7")
    check("client 198.51.100.7 in 198.51.100.0/24 (1k): 552", is_552(r), got=r)
    r = mail_reply("<a@other.example>", "SIZE=5000", client="198.51.101.7")
    check("client 198.51.101.7 outside it: MAIL goes on", r.passes, got=r)


@suite.case
def live_rule_change_without_signal():
    r = mail_reply("<a@live.example>", "SIZE=5000")
    check("before the rule: MAIL goes on", r.passes, got=r)
    rid = ag().add_rule("--match", "sender-domain=live.example", "--max-size", "1k")
    t0 = time.monotonic()
    r = agtest.wait_until(lambda: is_552(mail_reply("<a@live.example>", "SIZE=5000")), 6, 0.2)
    check("a rule added while running applies within 6 s (PolicyCheckInterval 1)", r,
          got="still accepted after 6 s")
    agtest.diag("new rule effective after %.1fs" % (time.monotonic() - t0))
    r = ag().ctl("rule", "disable", rid)
    check("authgatectl rule disable", r.returncode == 0, agtest.fmt_run(r))
    r = agtest.wait_until(lambda: mail_reply("<a@live.example>", "SIZE=5000").passes, 6, 0.2)
    check("a disabled rule stops applying within 6 s", r)
    r = ag().ctl("rule", "enable", rid)
    check("authgatectl rule enable", r.returncode == 0, agtest.fmt_run(r))
    r = agtest.wait_until(lambda: is_552(mail_reply("<a@live.example>", "SIZE=5000")), 6, 0.2)
    check("re-enabled, it applies again", r)
    ag().del_rule(rid)
    r = agtest.wait_until(lambda: mail_reply("<a@live.example>", "SIZE=5000").passes, 6, 0.2)
    check("a deleted rule stops applying within 6 s", r)


@suite.case
def sighup_reload():
    ag().reload()
    time.sleep(0.5)
    check("daemon still running after SIGHUP", ag().alive())
    r = mail_reply("<a@size.example>", "SIZE=20000")
    check("rules still apply after SIGHUP", is_552(r), got=r)
    t = send("<a@other.example>", 1000)
    check("mail still accepted after SIGHUP", t.accepted, got=t)


@suite.case
def sighup_reloads_config():
    d = agtest.Authgate(agtest.tmpdir("hup"), name="authgate-hup")
    r = d.ctl("init")
    check("authgatectl init", r.returncode == 0, agtest.fmt_run(r))
    d.add_rule("--match", "sender-domain=size.example", "--max-size", "10k")
    d.start()
    pid = d.proc.pid

    def over_size():
        c = open_session(d)
        r = c.mail("<a@size.example>", "SIZE=20000")
        c.close()
        return r
    r = over_size()
    check("DryRun no: SIZE=20000 gets 552", is_552(r), got=r)
    d.write_config(DryRun="yes")
    d.reload()
    r = agtest.wait_until(lambda: over_size().passes, 5, 0.2)
    check("after DryRun yes + SIGHUP: MAIL goes on within 5 s", r, got=over_size())
    check("same process", d.alive() and d.proc.pid == pid)
    d.terminate()


@suite.case
def dry_run_accepts_and_logs_would_reject():
    d = agtest.Authgate(agtest.tmpdir("dry"), conf={"DryRun": "yes"}, name="authgate-dry")
    r = d.ctl("init")
    check("authgatectl init", r.returncode == 0, agtest.fmt_run(r))
    rid = d.add_rule("--match", "sender-domain=size.example", "--max-size", "10k")
    d.start()
    try:
        mark = d.log_mark()
        qid = new_qid()
        c = open_session(d)
        h, b = agtest.make_message("dry", size=20000, sender="a@size.example")
        t = c.transaction("<a@size.example>", ["<bob@example.net>"], h, b,
                          mail_args=["SIZE=20000"], queue_id=qid)
        c.quit()
        check("DryRun yes: the over-size message is accepted", t.accepted, got=t)
        ln = check_decision(d, qid, "accept", since=mark,
                            extra={"dry_run": "yes", "would": "reject"},
                            what="log says dry_run=yes would=reject")
        if ln:
            check("log names the rule that would have rejected",
                  rid in (ln.get("rule"), ln.get("would_rule")),
                  expected="rule=%s (or would_rule=%s)" % (rid, rid), got=ln["line"])
    finally:
        d.terminate()


suite.run()

#!/usr/bin/python3
"""The Postfix integration that authgate(8) POSTFIX describes, on a
private Postfix whose smtpd, cleanup and qmqpd run chrooted in its queue
directory, as Debian's master.cf has them:

    Socket   unix:QUEUE_DIRECTORY/authgate/authgate.sock   (authgate.conf)
    UserID   nobody:postfix
    smtpd_milters = unix:authgate/authgate.sock               (main.cf)
    non_smtpd_milters = $smtpd_milters
    milter_default_action = tempfail

The relative path names the same socket inside the chroot and outside
it.  authgate makes the socket's folder (QUEUE_DIRECTORY/authgate) owned
by UserID, and the socket in Postfix's group.  Checked: mail over SMTP
(smtpd_milters) and over QMQP (qmqpd hands it to cleanup: the
non_smtpd_milters) arrives at the sink with authgate's
Authentication-Results and gets a log line; a size rule refuses over SMTP
with 552 5.3.4 and over QMQP with a permanent failure; with authgate
stopped, milter_default_action = tempfail makes Postfix answer 451 4.7.1
and nothing is lost."""

import grp
import os
import pwd
import re
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import agtest  # noqa: E402
import agpostfix  # noqa: E402
from agtest import check, check_eq  # noqa: E402

suite = agtest.Suite("e2e: Postfix chrooted, the documented main.cf", case_timeout=90,
                     total_timeout=300)
S = {}


@suite.setup
def setup():
    agpostfix.require()
    agtest.require_authgate()
    sink = S["sink"] = agpostfix.Sink(agtest.tmpdir("sink")).start()
    pf = S["pf"] = agpostfix.Postfix(
        agtest.tmpdir("pf"), sink.port, milter="unix:authgate/authgate.sock", chroot=True,
        qmqp=True, extra={"non_smtpd_milters": "$smtpd_milters"})
    wd = agtest.tmpdir("ag")
    nobody = pwd.getpwnam("nobody")
    os.chown(wd, nobody.pw_uid, nobody.pw_gid)     # its database lives here
    os.chmod(wd, 0o755)
    a = S["ag"] = agtest.Authgate(wd, socket_kind="unix",
                                  conf={"UserID": "nobody:postfix", "UMask": "0007",
                                        "AuthservID": "mx.chroot.test",
                                        "TrustedNetworks": "none"})
    a.sock_path = os.path.join(pf.queue, "authgate", "authgate.sock")
    a.socket = "unix:" + a.sock_path
    a.write_config(Socket=a.socket)
    r = a.ctl("init")
    check("authgatectl init", r.returncode == 0, agtest.fmt_run(r), fatal=True)
    os.chown(a.db, nobody.pw_uid, nobody.pw_gid)
    a.add_rule("--max-size", "20k")
    a.start()
    pf.start()


def smtp_send(token, size=0):
    h, b = agtest.make_message(token, sender="alice@example.org", size=size)
    s = S["pf"].smtp()
    try:
        return agpostfix.send_raw(s, "alice@example.org", ["bob@example.net"],
                                  agtest.message_bytes(h, b))
    finally:
        s.quit()


def qmqp_send(token, size=0):
    h, b = agtest.make_message(token, sender="alice@example.org", size=size)
    raw = agtest.message_bytes(h, b).replace(b"\r\n", b"\n")
    return agpostfix.qmqp_send(S["pf"].qmqp_port, "alice@example.org", ["bob@example.net"], raw)


@suite.case
def the_socket_lives_in_the_chroot():
    path = S["ag"].sock_path
    st = os.stat(path)
    check("the socket is Postfix's group, mode 0770",
          st.st_gid == grp.getgrnam("postfix").gr_gid and (st.st_mode & 0o777) == 0o770,
          got=(st.st_gid, oct(st.st_mode)))
    d = os.stat(os.path.dirname(path))
    check("its folder was made by authgate for UserID (nobody:postfix, 0750)",
          (d.st_uid, d.st_gid, d.st_mode & 0o777) ==
          (pwd.getpwnam("nobody").pw_uid, grp.getgrnam("postfix").gr_gid, 0o750),
          got=(d.st_uid, d.st_gid, oct(d.st_mode)))


@suite.case
def smtp_mail_goes_through_smtpd_milters():
    stage, rep, rr = smtp_send("chroot-smtp-1")
    check("250 at end of data", stage == "eod" and rep.startswith("250"), got=(stage, rep, rr))
    msg = S["sink"].wait_for("chroot-smtp-1")
    check("it arrives with authgate's Authentication-Results",
          msg is not None and "Authentication-Results: mx.chroot.test" in msg,
          got=(msg or "")[:3000])
    check("authgate logged it (action=accept)",
          S["ag"].wait_log(r"from=<alice@example\.org> .*action=accept", 5) is not None)
    pids = set(re.findall(r"postfix-agtest/smtpd\[(\d+)\]", S["pf"].log()))
    roots = set()
    for pid in pids:
        try:
            roots.add(os.readlink("/proc/%s/root" % pid))
        except OSError:
            pass
    check("smtpd really runs chrooted in the queue directory", roots == {S["pf"].queue},
          got=(pids, roots))
    stage, rep, rr = smtp_send("chroot-smtp-big", size=40000)
    check("over the size rule: 552 5.3.4 at end of data",
          stage == "eod" and rep.startswith("552 5.3.4"), got=(stage, rep, rr))


@suite.case
def qmqp_mail_goes_through_non_smtpd_milters():
    mark = S["ag"].log_mark()
    ans = qmqp_send("chroot-qmqp-1")
    check("QMQP: queued (K)", ans.startswith("K"), got=ans)
    msg = S["sink"].wait_for("chroot-qmqp-1")
    check("it arrives with authgate's Authentication-Results",
          msg is not None and "Authentication-Results: mx.chroot.test" in msg,
          got=(msg or "")[:3000])
    check("authgate logged it",
          S["ag"].wait_log(r"from=<alice@example\.org> .*action=accept", 5, since=mark)
          is not None)
    ans = qmqp_send("chroot-qmqp-big", size=40000)
    check("QMQP over the size rule: a permanent failure (D) naming 5.3.4",
          ans.startswith("D") and "5.3.4" in ans, got=ans)


@suite.case
def milter_down_means_tempfail():
    S["ag"].stop()
    s = S["pf"].smtp()
    h, b = agtest.make_message("chroot-down", sender="alice@example.org")
    try:
        stage, rep, rr = agpostfix.send_raw(s, "alice@example.org", ["bob@example.net"],
                                            agtest.message_bytes(h, b))
    finally:
        s.quit()
    check("authgate down: 451 4.7.1 (milter_default_action = tempfail)",
          rep.startswith("451 4.7.1"), got=(stage, rep, rr))
    check("nothing reached the sink", not S["sink"].find("chroot-down"))


suite.run()

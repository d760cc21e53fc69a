#!/usr/bin/python3
"""The daemon on a unix socket with UMask 0000: the socket is usable by
another user (Postfix's smtpd runs as postfix), mail goes through."""

import os
import stat
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import agtest  # noqa: E402
from agtest import check, check_decision, new_qid, open_session  # noqa: E402

suite = agtest.Suite("milter: unix socket")
S = {}


@suite.setup
def setup():
    agtest.require_authgate()
    S["ag"] = agtest.Authgate(agtest.tmpdir("unix"), socket_kind="unix",
                              conf={"UMask": "0000"}).start()


@suite.case
def socket_mode_follows_umask():
    st = os.stat(S["ag"].sock_path)
    check("it is a socket", stat.S_ISSOCK(st.st_mode), got=oct(st.st_mode))
    check("UMask 0000: writable by others", st.st_mode & 0o002 != 0,
          expected="o+w", got=oct(st.st_mode & 0o777))


@suite.case
def message_over_unix_socket():
    ag = S["ag"]
    mark = ag.log_mark()
    c = open_session(ag)
    qid = new_qid()
    h, b = agtest.make_message("unix socket")
    t = c.transaction(headers=h, body=b, queue_id=qid)
    check("accepted over the unix socket", t.accepted, got=t)
    c.quit()
    check_decision(ag, qid, "accept", since=mark)


@suite.case
def other_user_can_connect():
    ag = S["ag"]
    if os.geteuid() != 0:
        raise agtest.Skip("needs root to switch to user nobody")
    code = ("import socket,sys\ns=socket.socket(socket.AF_UNIX)\ns.settimeout(5)\n"
            "s.connect(sys.argv[1])\nprint('connected')\n")
    r = agtest.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
                    "/usr/bin/python3", "-c", code, ag.sock_path])
    check("user nobody can connect to the socket", "connected" in (r.stdout or ""),
          agtest.fmt_run(r))


@suite.case
def sigterm_stops():
    ag = S["ag"]
    rc = ag.stop()
    check("SIGTERM stops the daemon with status 0", rc == 0, expected=0, got=rc)


suite.run()

#!/usr/bin/python3
"""The daemon on a unix socket with UMask 0000: the socket is usable by
another user (Postfix's smtpd runs as postfix), mail goes through."""

import os
import socket
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


def _status_ids(pid):
    """Real/effective uid and gid, and the supplementary groups of PID."""
    out = {}
    with open("/proc/%d/status" % pid) as f:
        for ln in f:
            k, _, v = ln.partition(":")
            if k in ("Uid", "Gid", "Groups"):
                out[k] = v.split()
    return out


@suite.case
def userid_drops_privileges():
    if os.geteuid() != 0:
        raise agtest.Skip("needs root to drop privileges")
    import grp
    import pwd
    nobody = pwd.getpwnam("nobody")
    nogroup = grp.getgrnam("nogroup")
    work = agtest.tmpdir("userid")
    os.chmod(work, 0o755)        # nobody must reach the subfolders
    ag = agtest.Authgate(work, socket_kind="unix", name="dropped",
                         db=os.path.join(work, "lib", "authgate.db"),
                         conf={"UserID": "nobody:nogroup", "UMask": "0007"})
    ag.sock_path = os.path.join(work, "run", "authgate.sock")
    ag.socket = "unix:" + ag.sock_path
    ag.write_config(Socket=ag.socket)
    ag.start()
    ids = _status_ids(ag.proc.pid)
    check("real and effective uid are nobody's", ids["Uid"][:2] == [str(nobody.pw_uid)] * 2,
          expected=nobody.pw_uid, got=ids["Uid"])
    check("real and effective gid are nogroup's", ids["Gid"][:2] == [str(nogroup.gr_gid)] * 2,
          expected=nogroup.gr_gid, got=ids["Gid"])
    check("no supplementary group of root's kept", "0" not in ids.get("Groups", []),
          got=ids.get("Groups"))
    st = os.stat(ag.sock_path)
    check("socket owned by the dropped user", (st.st_uid, st.st_gid) ==
          (nobody.pw_uid, nogroup.gr_gid), got=(st.st_uid, st.st_gid))
    check("socket mode follows UMask 0007", st.st_mode & 0o777 == 0o770,
          expected="0o770", got=oct(st.st_mode & 0o777))
    dbst = os.stat(ag.db)
    check("database created by the dropped user", dbst.st_uid == nobody.pw_uid,
          got=dbst.st_uid)
    mark = ag.log_mark()
    c = open_session(ag)
    qid = new_qid()
    h, b = agtest.make_message("dropped privileges")
    t = c.transaction(headers=h, body=b, queue_id=qid)
    check("accepted while running as nobody", t.accepted, got=t)
    c.quit()
    check_decision(ag, qid, "accept", since=mark)
    check("stops cleanly", ag.stop() == 0)


@suite.case
def userid_unknown_user_refused():
    if os.geteuid() != 0:
        raise agtest.Skip("UserID is looked up only when started as root")
    work = agtest.tmpdir("baduser")
    ag = agtest.Authgate(work, name="baduser",
                         conf={"UserID": "no-such-user-authgate"})
    ag.start(wait=False)
    rc = ag.proc.wait(10)
    check("exits with status 1", rc == 1, expected=1, got=rc)
    check("says which user is missing",
          ag.wait_log(r"no such user: no-such-user-authgate", 2) is not None,
          agtest.tail(ag.log_path))


@suite.case
def stale_socket_path_not_followed():
    """What is at the socket path when the daemon starts: a stale socket
    is replaced; a regular file, or a symbolic link to one, is refused
    (exit 1) and left as it was; a link to a socket elsewhere is itself
    replaced, never the socket it points at."""
    work = agtest.tmpdir("stale")
    ag = agtest.Authgate(work, name="stale", socket_kind="unix")
    path = ag.sock_path
    target = os.path.join(work, "precious.txt")
    with open(target, "w") as f:
        f.write("keep me\n")

    os.symlink(target, path)
    ag.start(wait=False)
    rc = ag.proc.wait(10)
    check("a link to a regular file at the socket path: exit 1", rc == 1, expected=1, got=rc)
    check("the link is left, the file it names untouched",
          os.path.islink(path) and open(target).read() == "keep me\n",
          got=(os.path.islink(path), open(target).read()))
    os.unlink(path)

    with open(path, "w") as f:
        f.write("a file\n")
    ag.start(wait=False)
    rc = ag.proc.wait(10)
    check("a regular file at the socket path: exit 1, the file kept",
          rc == 1 and open(path).read() == "a file\n", got=rc)
    os.unlink(path)

    other = os.path.join(work, "other.sock")
    keep = socket.socket(socket.AF_UNIX)
    keep.bind(other)
    os.symlink(other, path)
    ag.start()
    check("a link to a socket elsewhere: the daemon starts on a socket of its own",
          stat.S_ISSOCK(os.lstat(path).st_mode) and not os.path.islink(path),
          got=oct(os.lstat(path).st_mode))
    check("the socket the link named is untouched", stat.S_ISSOCK(os.lstat(other).st_mode))
    ag.stop()
    keep.close()

    # a stale socket left by a crash is replaced
    dead = socket.socket(socket.AF_UNIX)
    if os.path.exists(path):
        os.unlink(path)
    dead.bind(path)
    dead.close()
    ag.start()
    c = open_session(ag)
    qid = new_qid()
    h, b = agtest.make_message("after a stale socket")
    t = c.transaction(headers=h, body=b, queue_id=qid)
    check("a stale socket: replaced, mail goes through", t.accepted, got=t)
    c.quit()
    ag.stop()


@suite.case
def sigterm_stops():
    ag = S["ag"]
    rc = ag.stop()
    check("SIGTERM stops the daemon with status 0", rc == 0, expected=0, got=rc)


suite.run()

#!/usr/bin/python3
"""Policy database faults: missing (created at start), corrupt, newer
schema, locked by another writer (at start, and while running with a
policy loaded), read-only, and On-DatabaseError accept."""

import grp
import os
import sqlite3
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import agtest  # noqa: E402
from agtest import check, check_eq, new_qid  # noqa: E402

suite = agtest.Suite("milter: database faults")

DB_ERROR = r"(?i)database|sqlite"
NOT_A_DB = r"(?i)not a database|corrupt|malformed"
LOCKED = r"(?i)lock|busy"


@suite.setup
def setup():
    agtest.require_authgate()


def walk(ag, sender="<alice@example.org>", size=0, mail_args=()):
    """One message over a fresh connection: (stage, reply) of the first
    reply that stops it, or ('eom', final reply)."""
    c = ag.client()
    try:
        c.negotiate()
        r = c.connect("client.example", "4", 40000, "192.0.2.10")
        if not r.passes:
            return "connect", r
        r = c.helo("client.example")
        if not r.passes:
            return "helo", r
        h, b = agtest.make_message("db", size=size, sender=sender.strip("<>"))
        t = c.transaction(sender, ["<bob@example.net>"], h, b, mail_args=mail_args,
                          queue_id=new_qid())
        return t.stage, t.final
    finally:
        c.quit()


def is_451_430(r):
    return r.code == "451" and r.xcode == "4.3.0"


def accepted(res):
    stage, r = res
    return stage == "eom" and r.kind in ("accept", "continue")


def make_db(ag, *rules):
    r = ag.ctl("init")
    check("authgatectl init", r.returncode == 0, agtest.fmt_run(r), fatal=True)
    return [ag.add_rule(*args) for args in rules]


@suite.case
def missing_database_is_created():
    d = agtest.tmpdir("missing")
    ag = agtest.Authgate(d, db=os.path.join(d, "new.db"))
    check("no database file before start", not os.path.exists(ag.db))
    ag.start()
    check("database file exists after start", os.path.exists(ag.db))
    try:
        con = sqlite3.connect("file:%s?mode=ro" % ag.db, uri=True, timeout=5)
        ver = con.execute("PRAGMA user_version").fetchone()[0]
        tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        con.close()
    except sqlite3.Error as e:
        ver, tables = None, str(e)
    check("it has a schema (user_version >= 1, tables)", isinstance(ver, int) and ver >= 1
          and len(tables) > 0, got="user_version=%r tables=%r" % (ver, tables))
    check("mail is accepted", accepted(walk(ag)))
    r = ag.ctl("rule", "list")
    check("authgatectl can read the database the daemon created", r.returncode == 0,
          agtest.fmt_run(r))
    ag.terminate()


@suite.case
def init_as_root_gives_the_database_to_userid():
    """authgatectl init run by root with UserID set makes the database the
    daemon's (it writes counters and history after dropping privileges);
    a database that already exists keeps its owner."""
    import pwd
    if os.geteuid() != 0:
        raise agtest.Skip("needs root")
    nobody = pwd.getpwnam("nobody")
    wd = agtest.tmpdir("init-uid")
    a = agtest.Authgate(wd, conf={"UserID": "nobody:nogroup"})
    r = a.ctl("init")
    check_eq("init: exit 0", r.returncode, 0, agtest.fmt_run(r))
    st = os.stat(a.db)
    check_eq("the new database belongs to nobody:nogroup", (st.st_uid, st.st_gid),
             (nobody.pw_uid, grp.getgrnam("nogroup").gr_gid))
    os.chown(a.db, 0, 0)
    r = a.ctl("init")
    check_eq("init again: exit 0", r.returncode, 0, agtest.fmt_run(r))
    check_eq("an existing database keeps its owner", os.stat(a.db).st_uid, 0)
    b = agtest.Authgate(agtest.tmpdir("init-nouid"), conf={"UserID": "no-such-user-authgate"})
    r = b.ctl("init")
    check_eq("UserID naming no user: exit 1", r.returncode, 1, agtest.fmt_run(r))
    check("... says so, and makes no database", "no such user" in r.stderr and
          not os.path.exists(b.db), got=r.stderr)


@suite.case
def corrupt_database():
    d = agtest.tmpdir("corrupt")
    ag = agtest.Authgate(d)
    with open(ag.db, "wb") as f:
        f.write((b"this is not an SQLite database, just garbage\n" * 200) + bytes(range(256)) * 8)
    ag.start()
    check("daemon starts and listens with a corrupt database", ag.alive())
    stage, r = walk(ag)
    check("mail gets 451 4.3.0 (On-DatabaseError tempfail)", is_451_430(r),
          expected="replycode 451 4.3.0 at some stage", got="%s: %r" % (stage, r))
    ln = ag.wait_log(NOT_A_DB, timeout=3)
    check("log says the database is not a database / corrupt", ln is not None,
          expected="a line matching /%s/" % NOT_A_DB, got="\n".join(ag.log_lines()[-10:]))
    check("daemon still running", ag.alive())
    ag.terminate()


@suite.case
def schema_newer_than_program():
    d = agtest.tmpdir("newer")
    ag = agtest.Authgate(d)
    make_db(ag)
    con = sqlite3.connect(ag.db)
    con.execute("PRAGMA user_version = 999")
    con.commit()
    con.close()
    ag.start()
    stage, r = walk(ag)
    check("schema version 999: 451 4.3.0", is_451_430(r), got="%s: %r" % (stage, r))
    check("log mentions the database", ag.wait_log(DB_ERROR, timeout=3) is not None,
          got="\n".join(ag.log_lines()[-10:]))
    ag.terminate()


@suite.case
def others_may_write_it_refused():
    """A database others may write, or in a folder others may write to
    (sticky or not): the daemon does not start, authgatectl refuses it,
    both saying why; fixed, both work."""
    d = agtest.tmpdir("perms")
    dbdir = os.path.join(d, "db")
    os.mkdir(dbdir, 0o700)
    ag = agtest.Authgate(d, db=os.path.join(dbdir, "policy.db"))
    make_db(ag)
    for label, fmode, dmode, why in (
            ("the file mode 0666", 0o666, 0o700, "is world-writable"),
            ("the folder mode 0777", 0o640, 0o777, "which anyone may write to"),
            ("the folder mode 1777 (sticky)", 0o640, 0o1777, "which anyone may write to")):
        os.chmod(ag.db, fmode)
        os.chmod(dbdir, dmode)
        ag.start(wait=False)
        rc = ag.proc.wait(10)
        check_eq("%s: authgate exits 1 at start" % label, rc, 1,
                 "\n".join(ag.log_lines()[-5:]))
        check("%s: the log says why and names the database" % label,
              any(ag.db in ln and why in ln and "not starting" in ln
                  for ln in ag.log_lines()), got="\n".join(ag.log_lines()[-5:]))
        r = ag.ctl("rule", "list")
        check("%s: authgatectl refuses it too (exit 1, why)" % label,
              r.returncode == 1 and why in r.stderr, agtest.fmt_run(r))
    os.chmod(ag.db, 0o640)
    os.chmod(dbdir, 0o750)
    ag.start()
    res = walk(ag)
    check("fixed (0640 in 0750): mail gets through", accepted(res), got=repr(res))
    r = ag.ctl("rule", "list")
    check_eq("fixed: authgatectl rule list exit 0", r.returncode, 0, agtest.fmt_run(r))
    ag.terminate()


def hold_lock(path):
    """Another writer holding an exclusive lock on PATH (also blocks
    readers in WAL mode: locking_mode=EXCLUSIVE)."""
    con = sqlite3.connect(path, timeout=5, isolation_level=None)
    con.execute("PRAGMA locking_mode=EXCLUSIVE")
    con.execute("BEGIN EXCLUSIVE")
    return con


@suite.case
def locked_at_start_then_recovers():
    d = agtest.tmpdir("locked")
    ag = agtest.Authgate(d, conf={"DatabaseTimeout": "200", "PolicyCheckInterval": "1"})
    rid, = make_db(ag, ("--match", "sender-domain=size.example", "--max-size", "10k"))
    con = hold_lock(ag.db)
    try:
        ag.start(timeout=20)
        stage, r = walk(ag)
        check("database locked since start: 451 4.3.0", is_451_430(r),
              got="%s: %r" % (stage, r))
        check("log says locked/busy", ag.wait_log(LOCKED, timeout=3) is not None,
              expected="a line matching /%s/" % LOCKED, got="\n".join(ag.log_lines()[-10:]))
    finally:
        con.close()             # releases the lock
    res = agtest.wait_until(lambda: (lambda x: x if accepted(x) else None)(walk(ag)), 8, 0.3)
    check("after the lock is released, mail is accepted within 8 s", res is not None)
    stage, r = walk(ag, "<a@size.example>", mail_args=["SIZE=20000"])
    check("and the rules are loaded (SIZE over 10k: 552)", r.code == "552", got=r)
    ag.terminate()


@suite.case
def locked_while_running_keeps_last_policy():
    d = agtest.tmpdir("locked2")
    ag = agtest.Authgate(d, conf={"DatabaseTimeout": "200"})
    make_db(ag, ("--match", "sender-domain=size.example", "--max-size", "10k"))
    ag.start()
    stage, r = walk(ag, "<a@size.example>", mail_args=["SIZE=20000"])
    check("before the lock: over-size gets 552", r.code == "552", got=r)
    con = hold_lock(ag.db)
    try:
        time.sleep(2.5)          # past PolicyCheckInterval
        stage, r = walk(ag, "<a@size.example>", mail_args=["SIZE=20000"])
        check("locked: the loaded policy still applies (552)", r.code == "552",
              got="%s: %r" % (stage, r))
        check("locked: normal mail still accepted", accepted(walk(ag)))
    finally:
        con.close()
    check("daemon still running", ag.alive())
    ag.terminate()


@suite.case
def read_only_database():
    d = agtest.tmpdir("ro")
    rodir = os.path.join(d, "ro")
    os.mkdir(rodir)
    ag = agtest.Authgate(d, db=os.path.join(rodir, "policy.db"))
    make_db(ag, ("--match", "sender-domain=size.example", "--max-size", "10k"))
    prefix = ()
    if os.geteuid() == 0:
        # Root writes through mode bits: use a read-only bind mount in a
        # private mount namespace that only the daemon sees.
        agtest.require("unshare")
        ro = ['unshare', '-m', '--propagation', 'private', 'sh', '-c',
              'mount --bind "$0" "$0" && mount -o remount,bind,ro "$0" "$0" && exec "$@"', rodir]
        probe = agtest.run(ro + ["sh", "-c", 'touch "$0"/probe', rodir])
        check("harness: the bind mount is read-only for root",
              probe.returncode not in (0, None) and "Read-only" in probe.stderr,
              agtest.fmt_run(probe), fatal=True)
        prefix = ro
        agtest.diag("as root: database directory bind-mounted read-only in a mount namespace")
    else:
        os.chmod(ag.db, 0o444)
        os.chmod(rodir, 0o555)
        agtest.diag("not root: database 0444 in a 0555 directory")
    ag.start(prefix=prefix)
    stage, r = walk(ag, "<a@size.example>", mail_args=["SIZE=20000"])
    check("read-only database at the current schema: rules apply (552)", r.code == "552",
          got="%s: %r" % (stage, r))
    check("read-only database: normal mail accepted", accepted(walk(ag)))
    check("daemon still running", ag.alive())
    ag.terminate()
    if os.geteuid() != 0:
        os.chmod(rodir, 0o755)


@suite.case
def on_database_error_accept():
    d = agtest.tmpdir("acc")
    ag = agtest.Authgate(d, conf={"On-DatabaseError": "accept"})
    with open(ag.db, "wb") as f:
        f.write(b"garbage, not a database\n" * 500)
    ag.start()
    stage, r = walk(ag)
    check("corrupt database with On-DatabaseError accept: mail accepted",
          stage == "eom" and r.kind in ("accept", "continue"), got="%s: %r" % (stage, r))
    check("log still reports the database problem", ag.wait_log(NOT_A_DB, timeout=3) is not None,
          got="\n".join(ag.log_lines()[-10:]))
    ag.terminate()


@suite.case
def sigterm_stops_cleanly():
    d = agtest.tmpdir("term")
    ag = agtest.Authgate(d)
    ag.start()
    check("mail accepted", accepted(walk(ag)))
    rc = ag.proc.stop(timeout=10)
    check("SIGTERM stops it within 10 s with status 0", rc == 0, expected=0, got=rc)


suite.run()

#!/usr/bin/python3
"""End to end, real Postfix -> authgate -> smtp-sink: the SQLite database
fails under the running daemon, and comes back.

The daemon runs in a mount namespace of its own (unshare -m) in which its
database directory is a 2 MB tmpfs, so that the disk can really be full
for it without touching the machine's disks; the test reaches the files
through /proc/PID/root.  Faults, one after the other on the same daemon:

  - locked: another process holds BEGIN EXCLUSIVE for 4 s;
  - disk full: a filler file takes every free block of the tmpfs;
  - corrupted: the file's header overwritten with garbage, then the
    original bytes put back;
  - deleted: the file removed, then restored from a copy;
  - replaced: another database (other rules) moved over it.

Each time: mail still gets its normal answer (the rules last read stay in
force: a --max-size rule still refuses SIZE= over it), the daemon stays
up, the log says what is wrong in one line, and when the fault ends the
DMARC results queued meanwhile reach the dmarc_result table (the history
writer) and the log says so.  The rules are read again from a replaced
file.  Failures at start (corrupt, locked, read-only, newer schema) are
tests/milter/t_database.py's.  A database made read-only under the running
daemon is not here: chattr +i on tmpfs does not stop writes through a
descriptor already open, and a remount read-only is refused while the
file is open for writing."""

import os
import re
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import agtest  # noqa: E402
import agpostfix  # noqa: E402
import agdns  # noqa: E402
from agtest import check, diag  # noqa: E402
from agpostfix import send_raw  # noqa: E402

suite = agtest.Suite("e2e: database faults under the running daemon", case_timeout=60,
                     total_timeout=240)
S = {"sent": 0}

TMPFS_SIZE = "2m"
LOCK_SECS = 4.0
SENDER = "alice@hist.example"
ZONES = {"_dmarc.hist.example": [("TXT", "v=DMARC1; p=none")]}
SAVE_FAIL = r"the history \(messages, DMARC results\) is not being saved: "
SAVED = r"the history is saved again"


@suite.setup
def setup():
    agpostfix.require()
    agdns.require()
    agtest.require("unshare")
    agtest.require_authgate()
    if os.geteuid() != 0:
        raise agtest.Skip("a tmpfs in a mount namespace needs root")
    dns = S["dns"] = agdns.Unbound(agtest.tmpdir("dns"), ZONES).start()
    d = agtest.tmpdir("ag")
    dbdir = S["dbdir"] = os.path.join(d, "db")
    os.mkdir(dbdir)
    seed = os.path.join(d, "seed.db")
    ag = S["ag"] = agtest.Authgate(d, db=os.path.join(dbdir, "authgate.db"), conf={
        "DNSServer": dns.server, "DMARCCheck": "yes", "SPFCheck": "no",
        "PolicyCheckInterval": "1", "RateCheckpointInterval": "1",
        "DatabaseTimeout": "200", "TrustedNetworks": "none"})
    # the rules go into a seed file that the namespace copies onto its tmpfs
    for args in (("init",), ("rule", "add", "--match", "sender-domain=size.example",
                             "--max-size", "10k"),
                 ("rule", "add", "--match", "sender-domain=hist.example",
                  "--rate", "messages:100000/1h:sender-domain")):
        r = agtest.run([agtest.AUTHGATECTL, "-c", ag.conf_path, "-d", seed] + list(args))
        check("authgatectl %s" % args[0], r.returncode == 0, agtest.fmt_run(r), fatal=True)
    wrap = ["unshare", "-m", "--propagation", "private", "sh", "-c",
            'mount -t tmpfs -o size=%s,mode=0755 tmpfs "$0" && cp "$1" "$0"/authgate.db && '
            'shift && exec "$@"' % TMPFS_SIZE, dbdir, seed]
    ag.start(prefix=wrap)
    S["pid"] = ag.proc.pid
    S["root"] = "/proc/%d/root" % ag.proc.pid
    check("the daemon's database is on its own tmpfs (not visible outside)",
          os.path.exists(db()) and not os.path.exists(ag.db), got=os.listdir(dbdir), fatal=True)
    sink = S["sink"] = agpostfix.Sink(agtest.tmpdir("sink")).start()
    S["pf"] = agpostfix.Postfix(agtest.tmpdir("pf"), sink.port,
                                milter="inet:127.0.0.1:%d" % ag.port).start()
    check("a first message is accepted", accepted(send()), fatal=True)
    check("and its DMARC result is written", wait_rows(1), got=rows(), fatal=True)


# ---------------------------------------------------------------------------
# helpers


def db(name="authgate.db"):
    """A file of the daemon's database directory, as the daemon sees it
    (for the kernel: SQLite resolves the /proc/PID/root link itself and
    would open the path in our own namespace, so SQL goes through sql())."""
    return S["root"] + os.path.join(S["dbdir"], name)


# Run in the daemon's mount namespace: SQL on its database (argv[1]), one
# statement per argument after it; prints the first column of the last.
SQL_PY = """
import sqlite3, sys, time
con = sqlite3.connect(sys.argv[1], timeout=1, isolation_level=None)
for q in sys.argv[2:]:
    if q.startswith("sleep "):
        time.sleep(float(q[6:]))
    elif q.startswith("backup "):
        dst = sqlite3.connect(q[7:])
        con.backup(dst)
        dst.close()
    else:
        r = con.execute(q).fetchall()
        print(r[0][0] if r else "", flush=True)
"""


def sql_argv(*stmts, path=None):
    return (["nsenter", "-t", str(S["pid"]), "-m", "/usr/bin/python3", "-c", SQL_PY,
             path or os.path.join(S["dbdir"], "authgate.db")] + list(stmts))


def sql(*stmts, path=None):
    return agtest.run(sql_argv(*stmts, path=path), timeout=30)


def rows():
    """Rows in dmarc_result, or None if the file cannot be read now."""
    r = sql("SELECT count(*) FROM dmarc_result")
    try:
        return int(r.stdout.split()[-1]) if r.returncode == 0 else None
    except (ValueError, IndexError):
        return None


def wait_rows(n, timeout=8.0):
    """True once dmarc_result has N rows or more."""
    return bool(agtest.wait_until(lambda: (rows() or 0) >= n, timeout, 0.2))


def send(sender=SENDER, size=None):
    """One message through Postfix: (stage, 'CODE TEXT')."""
    tok = "agtok-store-%d-%d" % (os.getpid(), S["sent"])
    S["sent"] += 1
    h, b = agtest.make_message(tok, sender=sender, msgid="<%s@test.invalid>" % tok)
    s = S["pf"].smtp(timeout=30)
    try:
        stage, rep, _ = send_raw(s, sender, ["bob@example.net"], agtest.message_bytes(h, b),
                                 "SIZE=%d" % size if size else "")
    finally:
        try:
            s.quit()
        except Exception:
            pass
    return stage, rep


def accepted(res):
    return res[0] == "eod" and res[1].startswith("250")


def during(what, fault_rx, n_mail=2):
    """While a fault is on: N_MAIL messages accepted (their results
    queued), the rules still in force, one log line matching FAULT_RX.
    Returns the mark for the recovery check."""
    ag = S["ag"]
    for i in range(n_mail):
        res = send()
        check("%s: message %d gets the normal answer (250)" % (what, i + 1), accepted(res),
              got=res)
    res = send("bob@size.example", size=20000)
    check("%s: the rules last read still apply (SIZE=20000 over 10k: 552 at MAIL FROM)" % what,
          res[0] == "mail" and res[1].startswith("552 "), got=res)
    ln = ag.wait_log(fault_rx, timeout=6, since=S["mark"])
    check("%s: the log says so" % what, ln is not None,
          expected="a line matching /%s/" % fault_rx,
          got="\n".join(ag.log_lines()[S["mark"]:][-12:]))
    if ln:
        diag("%s: %s" % (what, ln))
    n = len([x for x in ag.log_lines()[S["mark"]:] if re.search(fault_rx, x)])
    check("%s: said once, not once per message or per second" % what, n == 1, got=n)
    alive(what)


def after(what, recovered_rx, before):
    """The fault is over: the queued results are written, the log says
    so, and a new message is accepted and written too."""
    ag = S["ag"]
    t0 = time.monotonic()
    ok = wait_rows(before + 2, 10)
    diag("%s: the queued results were written %.1fs after the fault ended" %
         (what, time.monotonic() - t0))
    check("%s: the 2 results queued during the fault are written (%d -> %d rows)" %
          (what, before, rows() or -1), ok)
    if recovered_rx:
        check("%s: the log says it works again" % what,
              ag.wait_log(recovered_rx, timeout=6, since=S["mark"]) is not None,
              expected="a line matching /%s/" % recovered_rx,
              got="\n".join(ag.log_lines()[S["mark"]:][-12:]))
    check("%s: a new message is accepted" % what, accepted(send()))
    check("%s: and its result written" % what, wait_rows(before + 3, 10), got=rows())
    alive(what)


def alive(what):
    ag = S["ag"]
    check("%s: the daemon still runs (pid %d)" % (what, S["pid"]),
          ag.alive() and ag.proc.pid == S["pid"], got="exit %s" % ag.proc.returncode())


def start_fault():
    S["mark"] = S["ag"].log_mark()
    return rows()


# ---------------------------------------------------------------------------
# cases


@suite.case
def locked_by_another_writer():
    before = start_fault()
    out = os.path.join(agtest.tmpdir("lock"), "locker.out")
    locker = agtest.Proc(sql_argv("BEGIN EXCLUSIVE", "SELECT 'locked'", "sleep %.1f" % LOCK_SECS,
                                  "ROLLBACK"), name="locker", stdout=out, stderr=out).start()
    check("another process holds BEGIN EXCLUSIVE",
          agtest.wait_until(lambda: "locked" in open(out).read(), 5), got=agtest.tail(out),
          fatal=True)
    # the watcher finds it when it reads data_version, before any write
    during("locked", r"^database .*: database is locked$")
    check("the other process let go after %.0f s" % LOCK_SECS,
          locker.wait(LOCK_SECS + 5) == 0, got=agtest.tail(out))
    after("locked", r"^database .*: usable again, \d+ rules$", before)


@suite.case
def disk_full():
    before = start_fault()
    filler = db("filler")
    # unbuffered: a buffered file keeps the part of its last write that did
    # not fit, and raises again when it is closed
    with open(filler, "wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * 65536)
        except OSError as e:
            diag("filler: %s after %d bytes" % (e, f.tell()))
    try:
        check("the tmpfs is full", os.statvfs(filler).f_bavail == 0,
              got=os.statvfs(filler).f_bavail)
        during("disk full", SAVE_FAIL + r".*(full|disk I/O)")
        check("disk full: nothing written", rows() == before, got=rows())
    finally:
        os.unlink(filler)
    after("disk full", SAVED, before)


@suite.case
def corrupted_while_running():
    before = start_fault()
    with open(db(), "r+b") as f:
        good = f.read(100)          # the database header (the file format's first 100 bytes)
        f.seek(0)
        f.write((b"this is no longer an SQLite database header, it is garbage " * 2)[:100])
    try:
        during("corrupted", r"(?i)database .*(not a database|malformed|corrupt)")
        check("corrupted: no new file, nothing written", rows() is None, got=rows())
    finally:
        with open(db(), "r+b") as f:
            f.write(good)
    after("corrupted", r"database .* usable again", before)


@suite.case
def deleted_then_restored():
    before = start_fault()
    copy = db("backup.db")
    r = sql("backup " + os.path.join(S["dbdir"], "backup.db"))
    check("a copy of the database (SQLite backup)", r.returncode == 0 and os.path.exists(copy),
          agtest.fmt_run(r), fatal=True)
    os.unlink(db())
    try:
        during("deleted", r"database .*: .*no such file")
        check("deleted: the daemon did not make a new empty database",
              not os.path.exists(db()), got=os.listdir(S["root"] + S["dbdir"]))
        ln = S["ag"].wait_log(r"was removed or replaced", 1, since=S["mark"])
        check("deleted: the log says the file was removed", ln is not None)
    finally:
        os.rename(copy, db())
    after("deleted", r"database .* usable again", before)


@suite.case
def replaced_by_another_database():
    start_fault()
    res = send("bob@size.example", size=8000)
    check("before: SIZE=8000 is under the 10k limit: accepted", accepted(res), got=res)
    new = os.path.join(S["dbdir"], "new.db")
    r = sql("backup " + new)
    check("a copy of the database (SQLite backup)", r.returncode == 0, agtest.fmt_run(r),
          fatal=True)
    r = sql("UPDATE rules SET max_size = 5000 WHERE max_size IS NOT NULL",
            "SELECT changes()", path=new)
    check("the copy's size rule now says 5000", r.stdout.strip() == "1", agtest.fmt_run(r),
          fatal=True)
    os.rename(db("new.db"), db())
    ag = S["ag"]
    ln = ag.wait_log(r"was removed or replaced", 5, since=S["mark"])
    check("replaced: the log says so", ln is not None,
          got="\n".join(ag.log_lines()[S["mark"]:][-10:]))
    check("replaced: the new file's rules are loaded",
          ag.wait_log(r"policy loaded: \d+ rules", 5, since=S["mark"]) is not None,
          got="\n".join(ag.log_lines()[S["mark"]:][-10:]))
    res = send("bob@size.example", size=8000)
    check("replaced: SIZE=8000 is now over the new 5000 limit: 552",
          res[0] == "mail" and res[1].startswith("552 "), got=res)
    before = rows() or 0
    check("replaced: a message is accepted and its result written to the new file",
          accepted(send()) and wait_rows(before + 1, 10), got=(before, rows()))
    alive("replaced")
    S["ag"].terminate()


suite.run()

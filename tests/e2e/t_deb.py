#!/usr/bin/python3
"""The Debian package (packaging/debian): dpkg-buildpackage builds it from
the tree; installed, it brings the daemon, authgatectl, the man pages, the
configuration, the systemd unit and the bash completion, makes the
authgate user, /var/lib/authgate and the socket's folder in Postfix's
queue directory; `authgate -n` reads the packaged
configuration; the installed daemon, started on that configuration, runs
as authgate and checks a message that Postfix sends it over the packaged
socket; removing the package keeps the database.

It installs a package on the machine, so it runs only where that is
wanted: CI=true or AG_TEST_DEB=1 (skipped otherwise).  The package is
purged at the end (the authgate user stays, as Debian keeps system
users)."""

import glob
import grp
import os
import pwd
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import agtest  # noqa: E402
import agpostfix  # noqa: E402
from agtest import check, check_eq  # noqa: E402

suite = agtest.Suite("e2e: the Debian package", case_timeout=900, total_timeout=1500)
S = {}
CONF = "/etc/authgate/authgate.conf"
SOCK = "/var/spool/postfix/authgate/authgate.sock"
SOCKDIR = os.path.dirname(SOCK)
DB = "/var/lib/authgate/authgate.db"


@suite.setup
def setup():
    if not (agtest.IN_CI or os.environ.get("AG_TEST_DEB") == "1"):
        raise agtest.Skip("installs a package system-wide: CI=true or AG_TEST_DEB=1")
    agtest.require("dpkg-buildpackage")
    agtest.require("debhelper", kind="package")
    agpostfix.require()
    st = subprocess.run(["dpkg-query", "-W", "-f=${Status}", "authgate"],
                        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    check("no authgate package installed before the test",
          "install ok installed" not in st.stdout, fatal=True)
    S["dir"] = agtest.tmpdir("deb")
    agtest.at_cleanup(purge)
    # a fresh machine has no /run/authgate; one left by a daemon run by
    # hand as root (the README's first command) would keep its owner, and
    # the daemon makes the folder, with the right owner, only when it is
    # missing
    if os.path.isdir("/run/authgate") and not os.listdir("/run/authgate"):
        os.rmdir("/run/authgate")
    elif os.path.isdir("/run/authgate"):
        for name in os.listdir("/run/authgate"):
            p = os.path.join("/run/authgate", name)
            if not os.path.isdir(p):
                os.unlink(p)
        os.rmdir("/run/authgate")


def purge():
    st = S.get("daemon")
    if st is not None:
        st.stop()
    env = dict(os.environ, AUTHGATE_PURGE_DATA="yes")
    subprocess.run(["dpkg", "--purge", "authgate"], env=env,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


@suite.case(timeout=900)
def builds_from_the_tree():
    src = os.path.join(S["dir"], "authgate")
    os.makedirs(src)
    # the tree's files: git's list in a checkout; elsewhere (the sanitizer
    # pass runs in a copy without .git) everything but the other copies,
    # and the package build's own clean step (make distclean) tidies it
    files = subprocess.run(["git", "-C", agtest.SRCDIR, "ls-files", "-z"],
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    if files.returncode == 0 and files.stdout:
        argv = ["tar", "--null", "-T", "-", "-cf", "-"]
    else:
        argv = ["tar", "--exclude=./_asan", "--exclude=./_tsan", "--exclude=./_fuzz",
                "--exclude=./_bench", "--exclude=./.git", "--exclude=./debian",
                "-cf", "-", "."]
    tar = subprocess.Popen(argv, cwd=agtest.SRCDIR, stdin=subprocess.PIPE,
                           stdout=subprocess.PIPE)
    untar = subprocess.Popen(["tar", "-xf", "-"], cwd=src, stdin=tar.stdout)
    if files.returncode == 0 and files.stdout:
        tar.stdin.write(files.stdout)
    tar.stdin.close()
    untar.wait()
    check_eq("the tree copied", tar.wait(), 0, fatal=True)
    shutil.copytree(os.path.join(src, "packaging", "debian"), os.path.join(src, "debian"))
    env = dict(os.environ, DEB_BUILD_OPTIONS="nocheck parallel=2")
    r = agtest.run(["dpkg-buildpackage", "-us", "-uc", "-b"], cwd=src, env=env, timeout=850)
    check_eq("dpkg-buildpackage -us -uc -b: exit 0", r.returncode, 0,
             detail=agtest.fmt_run(r)[-4000:], fatal=True)
    debs = glob.glob(os.path.join(S["dir"], "authgate_*.deb"))
    check_eq("one .deb built", len(debs), 1, fatal=True)
    S["deb"] = debs[0]


@suite.case
def installs_what_an_administrator_needs():
    check("built", "deb" in S, fatal=True)
    r = agtest.run(["dpkg", "-i", S["deb"]], timeout=300)
    check_eq("dpkg -i: exit 0", r.returncode, 0, detail=agtest.fmt_run(r), fatal=True)
    for path in ("/usr/sbin/authgate", "/usr/sbin/authgatectl", CONF,
                 "/usr/share/man/man8/authgate.8.gz", "/usr/share/man/man5/authgate.conf.5.gz",
                 "/usr/share/man/man8/authgatectl.8.gz",
                 "/lib/systemd/system/authgate.service",
                 "/usr/share/bash-completion/completions/authgatectl"):
        check("installed: %s" % path, os.path.exists(path))
    try:
        pw = pwd.getpwnam("authgate")
    except KeyError:
        pw = None
    check("the authgate user exists", pw is not None, fatal=True)
    st = os.stat("/var/lib/authgate")
    check("/var/lib/authgate belongs to authgate, mode 0750",
          st.st_uid == pw.pw_uid and (st.st_mode & 0o777) == 0o750,
          got=(st.st_uid, oct(st.st_mode)))
    st = os.stat(SOCKDIR)
    check("postinst made %s for the socket: authgate:postfix, mode 0750" % SOCKDIR,
          (st.st_uid, st.st_gid, st.st_mode & 0o777) ==
          (pw.pw_uid, grp.getgrnam("postfix").gr_gid, 0o750),
          got=(st.st_uid, st.st_gid, oct(st.st_mode)))
    r = agtest.run(["/usr/sbin/authgate", "-n"])
    check_eq("authgate -n: exit 0", r.returncode, 0, detail=agtest.fmt_run(r))
    for line in ("Socket unix:%s" % SOCK, "Database %s" % DB, "UserID authgate:postfix",
                 "ControlSocket /run/authgate/control.sock"):
        check("authgate -n shows %s" % line, line in r.stdout.splitlines(), got=r.stdout)


@suite.case
def the_installed_daemon_checks_mail_from_postfix():
    check("installed", os.path.exists("/usr/sbin/authgate"), fatal=True)
    # the packaged configuration, with DNS kept on loopback and nothing
    # that would need it: this test checks the package, not SPF
    conf = os.path.join(S["dir"], "authgate.conf")
    with open(CONF) as f:
        text = f.read()
    with open(conf, "w") as f:
        f.write(text + "\nDNSServer 127.0.0.1@9\nSPFCheck no\nDMARCCheck no\n"
                "AuthservID mx.deb.test\nTrustedNetworks none\n")
    os.chmod(conf, 0o644)
    log = os.path.join(S["dir"], "authgate.log")
    d = S["daemon"] = agtest.Proc(["/usr/sbin/authgate", "-f", "-c", conf], name="authgate",
                                  stdout=log, stderr=log).start()
    check("the socket appears", agtest.wait_until(lambda: os.path.exists(SOCK), 15),
          detail=agtest.tail(log), fatal=True)
    with open("/proc/%d/status" % d.pid) as f:
        uid = [ln.split()[1] for ln in f if ln.startswith("Uid:")][0]
    check_eq("the daemon runs as authgate", int(uid), pwd.getpwnam("authgate").pw_uid)
    st = os.stat(SOCK)
    check("the socket is Postfix's group, mode 0770",
          st.st_gid == grp.getgrnam("postfix").gr_gid and (st.st_mode & 0o777) == 0o770,
          got=(st.st_gid, oct(st.st_mode)))
    sink = agpostfix.Sink(agtest.tmpdir("sink")).start()
    pf = agpostfix.Postfix(agtest.tmpdir("pf"), sink.port, milter="unix:" + SOCK)
    pf.start()
    agtest.at_cleanup(pf.stop)
    agtest.at_cleanup(sink.stop)
    s = pf.smtp()
    h, b = agtest.make_message("deb-token-1", sender="alice@example.org")
    stage, rep, rr = agpostfix.send_raw(s, "alice@example.org", ["bob@example.net"],
                                        agtest.message_bytes(h, b))
    s.quit()
    check("Postfix accepts the message (250)", stage == "eod" and rep.startswith("250"),
          got=(stage, rep, rr), detail=agtest.tail(log))
    msg = sink.wait_for("deb-token-1")
    check("it arrives with authgate's Authentication-Results",
          msg is not None and "Authentication-Results: mx.deb.test" in msg,
          got=(msg or "")[:1500])
    check("the database was made, owned by authgate",
          os.path.exists(DB) and os.stat(DB).st_uid == pwd.getpwnam("authgate").pw_uid)
    # authgate(8) EXAMPLES: a rule added with the installed authgatectl
    # (as root, on the packaged configuration) reaches the running daemon
    ctl = ["/usr/sbin/authgatectl", "-c", conf]
    r = agtest.run(ctl + ["rule", "add", "--max-size", "20k", "--comment", "size ceiling"])
    check_eq("authgatectl rule add --max-size 20k: exit 0", r.returncode, 0,
             detail=agtest.fmt_run(r))
    agtest.wait_until(lambda: "policy loaded: 1 rules" in open(log).read(), 10)
    s = pf.smtp()
    h, b = agtest.make_message("deb-token-2", sender="alice@example.org", size=40000)
    stage, rep, rr = agpostfix.send_raw(s, "alice@example.org", ["bob@example.net"],
                                        agtest.message_bytes(h, b))
    s.quit()
    check("a 40 KB message: 552 5.3.4 from the rule", rep.startswith("552 5.3.4"),
          got=(stage, rep, rr), detail=agtest.tail(log))
    owners = {n: os.stat(os.path.join(os.path.dirname(DB), n)).st_uid
              for n in os.listdir(os.path.dirname(DB))}
    check("authgatectl run as root left no file of root's in /var/lib/authgate",
          0 not in owners.values(), got=owners)

    def reported():
        r = agtest.run(ctl + ["--json", "report"])
        return r.returncode == 0 and '"messages":2,' in r.stdout and r
    r = agtest.wait_until(reported, 10)
    check("authgatectl report counts the two messages (1 accepted, 1 rejected)",
          r and '"accepted":1,' in r.stdout and '"rejected":1,' in r.stdout,
          got=agtest.run(ctl + ["--json", "report"]).stdout)
    d.stop()
    S["daemon"] = None


@suite.case
def remove_keeps_the_data():
    check("installed", os.path.exists("/usr/sbin/authgate"), fatal=True)
    had = os.path.exists(DB)
    r = agtest.run(["dpkg", "-r", "authgate"], timeout=300)
    check_eq("dpkg -r: exit 0", r.returncode, 0, detail=agtest.fmt_run(r))
    check("the daemon is gone", not os.path.exists("/usr/sbin/authgate"))
    check("the database stays", had and os.path.exists(DB))
    check("the configuration stays (a conffile)", os.path.exists(CONF))


suite.run()

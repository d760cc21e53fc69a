"""agsendmail: a private Sendmail on a free 127.0.0.1 port that relays
everything to a private smtp-sink, for end-to-end tests; the Sendmail
counterpart of agpostfix.py.

    sink = agpostfix.Sink(tmpdir("sink")).start()
    sm = Sendmail(tmpdir("sm"), relay_port=sink.port,
                  milter="unix:" + ag.sock_path).start()
    s = sm.smtp()                       # smtplib.SMTP connected, EHLO done
    ...
    msg = sink.wait_for("Subject: token")

Debian's sendmail-bin conflicts with postfix (both are the system MTA),
so it is never installed: the package is fetched with `apt-get download`
(the version of the installed sendmail-cf, whose m4 files build the .cf)
and unpacked with `dpkg -x` into a cache directory shared by every run,
/var/cache/authgate-tests/sendmail-bin_VERSION (AG_SENDMAIL_CACHE
overrides /var/cache/authgate-tests).  tests/deps.sh fills it
(`agsendmail.py fetch`); a test that finds it empty fetches it itself.
Without network and without CI=true that is a skip; with CI=true a failure.

The instance: a .mc with every path in its directory, listening on
127.0.0.1 only, no MSA port, no DNS (service switch: files), relaying
everything (promiscuous_relay: the only next hop is the sink) to
relay:[127.0.0.1] with the mailers' TCP port set to the sink's,
delivering before it answers the end of data (DeliveryMode interactive:
the message is at the sink when the client has its 250), and authgate
as INPUT_MAIL_FILTER.  Sendmail sleeps 60 s at start when the host name
has no dot, so it runs in a UTS and mount namespace of its own (unshare)
with the host name mx.test.invalid and a private /etc/hosts and
/etc/resolv.conf bind-mounted.  There is no syslog here: `-X FILE` keeps
the SMTP transcript of the daemon and its children, which log() reads.
It runs in the foreground (-bD) and is stopped by its PID.
"""

import os
import re
import shutil
import signal
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import agtest  # noqa: E402
from agtest import diag, free_port, run, tail, wait_until  # noqa: E402

CF_M4 = "/usr/share/sendmail/cf/m4/cf.m4"
M4 = "/usr/bin/m4"
UNSHARE = "/usr/bin/unshare"
IP = shutil.which("ip", path="/usr/sbin:/usr/bin:/sbin:/bin") or "/sbin/ip"
CACHE_ROOT = os.environ.get("AG_SENDMAIL_CACHE") or "/var/cache/authgate-tests"
# The Debian packages a private Sendmail needs installed (sendmail-bin's
# own dependencies beyond what a Debian 12 with Postfix has, the .cf
# builder, and iproute2 for the private network of t_sendmail.py)
PACKAGES = ("sendmail-cf", "m4", "libwrap0", "liblockfile1", "iproute2")
HOSTNAME = "mx.test.invalid"


def cf_version():
    """The installed sendmail-cf version, or None."""
    r = run(["dpkg-query", "-W", "-f=${Status} ${Version}", "sendmail-cf"], timeout=30)
    m = re.match(r"^install ok installed (\S+)$", r.stdout or "")
    return m.group(1) if r.returncode == 0 and m else None


def cache_dir(version):
    return os.path.join(CACHE_ROOT, "sendmail-bin_" + version.replace(":", "%3a"))


def binary(version=None):
    """The unpacked sendmail binary matching sendmail-cf, or None."""
    version = version or cf_version()
    if not version:
        return None
    p = os.path.join(cache_dir(version), "usr", "libexec", "sendmail", "sendmail")
    return p if os.access(p, os.X_OK) else None


def fetch(update_on_failure=False):
    """Download sendmail-bin (the version of the installed sendmail-cf)
    and unpack it into the cache.  Returns (path of the binary, None) or
    (None, why).  Safe when several runs fetch at once: each unpacks into
    a directory of its own and renames it into place."""
    version = cf_version()
    if not version:
        return None, "sendmail-cf is not installed (tests/deps.sh installs it)"
    have = binary(version)
    if have:
        return have, None
    os.makedirs(CACHE_ROOT, exist_ok=True)
    work = tempfile.mkdtemp(prefix=".fetch-", dir=CACHE_ROOT)
    os.chmod(work, 0o755)       # apt-get downloads as _apt where it can
    try:
        argv = ["apt-get", "download", "-q", "-o", "Acquire::Retries=1",
                "-o", "Acquire::http::Timeout=20", "sendmail-bin=" + version]
        r = run(argv, timeout=180, cwd=work)
        if r.returncode != 0 and update_on_failure:
            run(["apt-get", "update", "-q"], timeout=300)
            r = run(argv, timeout=180, cwd=work)
        debs = [f for f in os.listdir(work) if f.endswith(".deb")]
        if r.returncode != 0 or len(debs) != 1:
            return None, "apt-get download sendmail-bin=%s failed (no network?):\n%s" % (
                version, agtest.fmt_run(r))
        root = os.path.join(work, "root")
        r = run(["dpkg-deb", "-x", os.path.join(work, debs[0]), root], timeout=120)
        if r.returncode != 0:
            return None, "dpkg-deb -x failed:\n" + agtest.fmt_run(r)
        try:
            os.rename(root, cache_dir(version))
        except OSError:
            pass            # another run was first: use its copy
        have = binary(version)
        return (have, None) if have else (None, "no usr/libexec/sendmail/sendmail in %s" %
                                          debs[0])
    finally:
        shutil.rmtree(work, ignore_errors=True)


def require():
    """Root, unshare, the packages of PACKAGES and the unpacked sendmail
    binary (fetched here when the cache is empty).  Returns the binary.
    Missing pieces skip, or fail when CI=true."""
    if os.geteuid() != 0:
        if agtest.IN_CI:
            agtest.check("running as root for Sendmail", False, "CI=true: must run as root")
            raise agtest.Abort("not root")
        raise agtest.Skip("a private Sendmail needs root")
    agtest.require(UNSHARE)
    for p in PACKAGES:
        agtest.require(p, "package")
    path = binary()
    why = os.environ.get("AG_SENDMAIL_FETCH_ERROR")
    if not path and not why:
        path, why = fetch(update_on_failure=agtest.IN_CI)
    if path:
        return path
    if agtest.IN_CI:
        agtest.check("sendmail-bin unpacked in %s" % CACHE_ROOT, False, why)
        raise agtest.Abort("no sendmail binary")
    raise agtest.Skip("no sendmail binary: " + why.splitlines()[0])


# ---------------------------------------------------------------------------
# A private network


def private_network(addresses):
    """Run this script in a network namespace of its own, whose loopback
    interface also has ADDRESSES (e.g. 192.0.2.10/32), so that SMTP
    clients can connect from addresses that are not 127.0.0.0/8 (libspf2
    passes any loopback client, and Sendmail has no XCLIENT).  Called at
    the top of a script, before any output: re-executes the script under
    `unshare --net` (same PID), then brings the interface up.  Nothing in
    the namespace reaches the host's network.  Returns None when the
    script runs in its namespace, else the reason it does not (not root,
    no unshare): setup() then skips, or fails under CI=true.  Sendmail is
    fetched first, while there is a network (require() reports a
    failure)."""
    if os.environ.get("AG_PRIVATE_NET") == "1":
        cmds = [[IP, "link", "set", "lo", "up"]]
        cmds += [[IP, "addr", "add", a, "dev", "lo"] for a in addresses]
        for c in cmds:
            r = run(c, timeout=30)
            if r.returncode != 0:
                return "%s failed: %s" % (" ".join(c), (r.stderr or "").strip())
        return None
    if os.geteuid() != 0:
        return "a private network namespace needs root"
    probe = run([UNSHARE, "--net", "true"], timeout=30)
    if probe.returncode != 0:
        return "unshare --net does not work here: %s" % (probe.stderr or "").strip()
    env = dict(os.environ, AG_PRIVATE_NET="1")
    if os.geteuid() == 0 and not binary():
        path, why = fetch(update_on_failure=agtest.IN_CI)
        if not path:
            env["AG_SENDMAIL_FETCH_ERROR"] = why
    sys.stdout.flush()
    os.execve(UNSHARE, [UNSHARE, "--net", "--", sys.executable] + sys.argv, env)
    return "exec failed"        # not reached


# ---------------------------------------------------------------------------
# The instance


class Sendmail:
    """A private Sendmail (configuration, queue and transcript in WORKDIR)
    relaying to 127.0.0.1:RELAY_PORT, with MILTER (a socket spec as in the
    .mc's S=, "unix:PATH" or "inet:PORT@127.0.0.1") as its input filter.
    EXTRA_MC: more .mc lines, before the MAILER lines."""

    def __init__(self, workdir, relay_port, milter=None, extra_mc=(), binary_path=None,
                 milter_flags="T", milter_timeouts="S:30s;R:30s;E:5m"):
        self.dir = workdir
        self.binary = binary_path or binary()
        self.queue = os.path.join(workdir, "queue")
        self.mc = os.path.join(workdir, "sendmail.mc")
        self.cf = os.path.join(workdir, "sendmail.cf")
        self.transcript = os.path.join(workdir, "transcript")
        self.out = os.path.join(workdir, "sendmail.out")
        self.pid_file = os.path.join(workdir, "sendmail.pid")
        os.makedirs(self.queue, exist_ok=True)
        os.chmod(self.queue, 0o700)
        self.port = free_port()
        self.relay_port = relay_port
        self.milter = milter
        self.milter_flags = milter_flags
        self.milter_timeouts = milter_timeouts
        self.extra_mc = list(extra_mc)
        self.proc = None
        self.hook = agtest.on_failure(self._diag)

    def path(self, name):
        return os.path.join(self.dir, name)

    def mc_text(self):
        d = self.dir
        tcp = "TCP $h %d" % self.relay_port
        lines = [
            "divert(-1)",
            "# generated by tests/lib/agsendmail.py",
            "divert(0)dnl",
            "VERSIONID(`authgate test instance')dnl",
            "OSTYPE(`linux')dnl",
            "define(`MAIL_SETTINGS_DIR', `%s/')dnl" % d,
            "define(`QUEUE_DIR', `%s')dnl" % self.queue,
            "define(`ALIAS_FILE', `%s')dnl" % self.path("aliases"),
            "define(`HELP_FILE', `%s')dnl" % self.path("helpfile"),
            "define(`STATUS_FILE', `%s')dnl" % self.path("statistics"),
            "define(`confPID_FILE', `%s')dnl" % self.pid_file,
            "define(`confCW_FILE', `-o %s')dnl" % self.path("local-host-names"),
            "define(`confCT_FILE', `-o %s')dnl" % self.path("trusted-users"),
            "define(`confHOSTS_FILE', `%s')dnl" % self.path("hosts"),
            "define(`confSERVICE_SWITCH_FILE', `%s')dnl" % self.path("service.switch"),
            "define(`confDOMAIN_NAME', `%s')dnl" % HOSTNAME,
            # a socket and files under /tmp (sticky bit)
            "define(`confDONT_BLAME_SENDMAIL', `TrustStickyBit')dnl",
            "define(`confDONT_PROBE_INTERFACES', `True')dnl",
            "define(`confDELIVERY_MODE', `interactive')dnl",
            "define(`confTO_CONNECT', `5s')dnl",
            "define(`confTO_ICONNECT', `5s')dnl",
            "define(`confTO_IDENT', `0s')dnl",
            "define(`confMIN_FREE_BLOCKS', `0')dnl",
            "define(`confPRIVACY_FLAGS', `authwarnings,noexpn,novrfy')dnl",
            # a bare [127.0.0.1] is taken as this host and ignored
            "define(`SMART_HOST', `relay:[127.0.0.1]')dnl",
            "define(`RELAY_MAILER_ARGS', `%s')dnl" % tcp,
            "define(`ESMTP_MAILER_ARGS', `%s')dnl" % tcp,
            "define(`SMTP_MAILER_ARGS', `%s')dnl" % tcp,
            "FEATURE(`no_default_msa')dnl",
            "FEATURE(`accept_unresolvable_domains')dnl",
            "FEATURE(`promiscuous_relay')dnl",
            "DAEMON_OPTIONS(`Family=inet, Addr=127.0.0.1, Port=%d, Name=MTA')dnl" % self.port,
        ]
        if self.milter:
            lines.append("INPUT_MAIL_FILTER(`authgate', `S=%s, F=%s, T=%s')dnl" %
                         (self.milter, self.milter_flags, self.milter_timeouts))
        lines += self.extra_mc
        lines += ["MAILER(`local')dnl", "MAILER(`smtp')dnl"]
        return "\n".join(lines) + "\n"

    def write_config(self):
        for name, text in (("aliases", "postmaster: root\n"), ("helpfile", ""),
                           ("statistics", ""), ("local-host-names", ""),
                           ("trusted-users", ""),
                           ("hosts", "127.0.0.1\t%s mx localhost\n::1\tlocalhost\n" % HOSTNAME),
                           ("resolv.conf", "nameserver 127.0.0.1\noptions timeout:1 attempts:1\n"),
                           ("service.switch", "hosts\tfiles\naliases\tfiles\n")):
            with open(self.path(name), "w") as f:
                f.write(text)
        with open(self.mc, "w") as f:
            f.write(self.mc_text())
        r = run([M4, CF_M4, self.mc], timeout=60)
        if r.returncode != 0 or (self.milter and "\nXauthgate" not in r.stdout):
            raise RuntimeError("m4 %s failed:\n%s" % (self.mc, agtest.fmt_run(r)))
        with open(self.cf, "w") as f:
            f.write(r.stdout)

    def wrap(self, *args):
        """argv running the sendmail binary with ARGS in its own UTS and
        mount namespace (host name, /etc/hosts, /etc/resolv.conf)."""
        script = ("mount --bind \"$1\" /etc/hosts && mount --bind \"$2\" /etc/resolv.conf && "
                  "hostname %s && shift 2 && exec \"$@\"" % HOSTNAME)
        return [UNSHARE, "--uts", "--mount", "--propagation", "private", "--",
                "/bin/sh", "-c", script, "sh", self.path("hosts"), self.path("resolv.conf"),
                self.binary, "-C", self.cf] + list(args)

    def start(self, timeout=30):
        if not self.binary:
            raise RuntimeError("no sendmail binary (agsendmail.require() fetches it)")
        self.write_config()
        r = run(self.wrap("-bi"), timeout=60)      # the aliases database first
        if r.returncode != 0:
            raise RuntimeError("sendmail -bi failed:\n" + agtest.fmt_run(r))
        self.proc = agtest.Proc(self.wrap("-bD", "-X", self.transcript), name="sendmail",
                                stdout=self.out, stderr=self.out).start()
        agtest.at_cleanup(self.stop)

        def up():
            if not self.proc.alive():
                raise RuntimeError("sendmail exited with status %s:\n%s" %
                                   (self.proc.returncode(), tail(self.out)))
            return agtest.port_open("127.0.0.1", self.port)
        if not wait_until(up, timeout):
            raise RuntimeError("sendmail not listening on %d after %ds:\n%s" %
                               (self.port, timeout, tail(self.out)))
        return self

    def daemon_pid(self):
        """The daemon's PID from its pid file (the same as the process we
        started: the wrapper execs it)."""
        try:
            with open(self.pid_file) as f:
                return int(f.readline().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def children(self):
        """PIDs of live processes whose parent is the daemon (SMTP
        sessions, deliveries)."""
        pid = self.proc.pid if self.proc else None
        out = []
        if not pid:
            return out
        for d in os.listdir("/proc"):
            if not d.isdigit():
                continue
            try:
                with open("/proc/%s/stat" % d) as f:
                    st = f.read()
            except OSError:
                continue
            fields = st[st.rfind(")") + 2:].split()
            if len(fields) > 1 and fields[1] == str(pid):
                out.append(int(d))
        return out

    def stop(self):
        """SIGTERM to the daemon (it passes it on to its children) and
        wait; any child left is stopped by its PID."""
        if self.proc is None or self.proc.p is None:
            return
        kids = self.children()
        self.proc.stop(signal.SIGTERM, timeout=10)
        for k in kids:
            try:
                os.kill(k, signal.SIGTERM)
            except ProcessLookupError:
                pass

    def alive(self):
        return self.proc is not None and self.proc.alive()

    def smtp(self, helo="client.example", ehlo=True, timeout=30, source=None):
        """smtplib.SMTP connected (from SOURCE, an address, when given),
        EHLO (or HELO) done."""
        return agtest.smtp_client(self.port, helo, ehlo, timeout, source)

    def log(self):
        """The transcript so far."""
        return agtest.read_text(self.transcript)

    def wait_log(self, text, timeout=5.0):
        return bool(wait_until(lambda: text in self.log(), timeout, 0.1))

    def _diag(self):
        if self.proc is None:
            return
        diag("--- sendmail transcript (last lines of %s) ---" % self.transcript)
        diag(tail(self.transcript, 20))
        if os.path.exists(self.out) and os.path.getsize(self.out) > 0:
            diag("--- sendmail output ---", tail(self.out, 10))
        if not self.proc.alive():
            diag("--- sendmail is NOT running (exit status %s) ---" % self.proc.returncode())


def queued_id(reply_text):
    """'250 2.0.0 5ATABCDE012345 Message accepted for delivery' ->
    '5ATABCDE012345'."""
    m = re.match(r"^250 2\.0\.0 (\S+) Message accepted", reply_text or "")
    return m.group(1) if m else None


def main(argv):
    """`agsendmail.py fetch`: fill the cache (tests/deps.sh)."""
    if argv[1:] != ["fetch"]:
        sys.stderr.write("usage: agsendmail.py fetch\n")
        return 2
    path, why = fetch(update_on_failure=True)
    if not path:
        sys.stderr.write("agsendmail.py: %s\n" % why)
        return 1
    print("agsendmail.py: %s" % path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

"""benchlib: fixtures and measuring helpers for tests/bench/bench.py.

The servers come from tests/lib (agtest.Authgate, agpostfix.Postfix and
Sink, agdns.Unbound); this file adds what only the benchmarks need: the
test zone with SPF and DKIM keys, signed messages (dkimpy), OpenDKIM and
a null filter as peers, CPU time from /proc, medians and markdown tables.

Standard library plus Debian's python3-dkim and python3-nacl; runs under
/usr/bin/python3.  Every process is started through agtest.Proc (its own
session, stopped by PID at agtest.run_cleanups()).
"""

import base64
import os
import re
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
LIB = os.path.join(os.path.dirname(HERE), "lib")
if LIB not in sys.path:
    sys.path.insert(0, LIB)

import agtest          # noqa: E402
import agdns           # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")
OPENDKIM = "/usr/sbin/opendkim"

SENDER = "alice@example.com"
RCPT = "bob@example.net"
HELO = "client.example.com"
CLIENT = "192.0.2.10"          # milter level: passes ip4:192.0.2.0/24


def note(*args):
    """Progress on stderr (stdout carries the tables)."""
    sys.stderr.write(" ".join(str(a) for a in args) + "\n")
    sys.stderr.flush()


def bench_tool(name):
    """Path of a benchmark program tests/bench/NAME (the build tree first),
    or None.  AG_<NAME> in the environment overrides (e.g.
    AG_MILTERLOAD=/path/to/milterload)."""
    env = os.environ.get("AG_" + name.upper())
    if env:
        return env if os.access(env, os.X_OK) else None
    for base in (agtest.BUILDDIR, agtest.SRCDIR):
        p = os.path.join(base, "tests", "bench", name)
        if os.access(p, os.X_OK):
            return p
    return None


# ---------------------------------------------------------------------------
# Keys, zone, messages


class Fixture:
    """An RSA-2048 and an Ed25519 DKIM key for example.com, the zone that
    publishes them with SPF records, and messages signed with them."""

    def __init__(self, workdir):
        self.dir = workdir
        self.rsa_pem = os.path.join(workdir, "rsa.pem")
        r = agtest.run(["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt",
                        "rsa_keygen_bits:2048", "-out", self.rsa_pem])
        if r.returncode != 0:
            raise RuntimeError(agtest.fmt_run(r))
        der = subprocess.run(["openssl", "pkey", "-in", self.rsa_pem, "-pubout",
                              "-outform", "DER"], stdout=subprocess.PIPE,
                             check=True).stdout
        self.rsa_pub = base64.b64encode(der).decode()
        with open(self.rsa_pem, "rb") as f:
            self.rsa_priv = f.read()
        import nacl.signing
        sk = nacl.signing.SigningKey.generate()
        self.ed_priv = base64.b64encode(bytes(sk))
        self.ed_pub = base64.b64encode(bytes(sk.verify_key)).decode()

    def zones(self):
        """Zone data (agdns form).  The sender domain's SPF passes for
        127.0.0.1 (smtp-source through Postfix) and 192.0.2.0/24
        (milterload -a), after an include with a few mechanisms of the
        usual kinds; the HELO name has a record of its own."""
        return {
            "example.com": [
                ("TXT", "v=spf1 ip4:127.0.0.1 ip4:192.0.2.0/24 "
                        "include:_spf.example.net -all"),
                ("MX", "10 mx.example.com."), ("A", "192.0.2.1")],
            "_spf.example.net": [
                ("TXT", "v=spf1 ip4:198.51.100.0/24 ip4:203.0.113.0/24 "
                        "ip6:2001:db8::/32 a:mail.example.net mx:example.net -all")],
            "example.net": [("MX", "10 mx.example.net."), ("A", "198.51.100.1")],
            "mail.example.net": [("A", "198.51.100.25")],
            "mx.example.net": [("A", "198.51.100.26")],
            "mx.example.com": [("A", "192.0.2.25")],
            HELO: [("TXT", "v=spf1 ip4:127.0.0.1 ip4:192.0.2.0/24 -all"),
                   ("A", "192.0.2.10")],
            "rsa._domainkey.example.com": [("TXT", "v=DKIM1; k=rsa; p=" + self.rsa_pub)],
            "ed._domainkey.example.com": [("TXT", "v=DKIM1; k=ed25519; p=" + self.ed_pub)],
        }

    def zone_file(self, path, ttl=300):
        """The zone as unbound local-data lines (for verifybench)."""
        ub = agdns.Unbound(self.dir, self.zones(), ttl=ttl, port=9)
        agtest.remove_failure_hook(ub.hook)
        with open(path, "w") as f:
            for ln in ub.local_data():
                m = re.match(r"^\s*local-data: '(.*)'$", ln)
                f.write(m.group(1) + "\n")
        return path

    def message(self, size=4096, key="rsa", sender=SENDER, rcpt=RCPT, path=None):
        """A message of about SIZE bytes (headers included), signed with
        KEY ('rsa', 'ed', 'both' or None), CRLF line ends."""
        hdr = ("From: Alice <%s>\r\nTo: <%s>\r\nSubject: benchmark message\r\n"
               "Date: Mon, 30 Nov 2026 10:00:00 +0000\r\n"
               "Message-ID: <bench.%d@example.com>\r\nMIME-Version: 1.0\r\n"
               "Content-Type: text/plain; charset=us-ascii\r\n\r\n" % (sender, rcpt, size))
        line = b"The quick brown fox jumps over the lazy dog; 0123456789 abcdefghij.\r\n"
        body = b""
        want = max(size - len(hdr) - 500, 64)
        body = line * (want // len(line) + 1)
        msg = hdr.encode() + body
        import dkim
        sigs = []
        keys = {"rsa": [("rsa", self.rsa_priv, b"rsa-sha256")],
                "ed": [("ed", self.ed_priv, b"ed25519-sha256")]}
        keys["both"] = keys["rsa"] + keys["ed"]
        for sel, priv, alg in keys.get(key, []):
            sigs.append(dkim.sign(msg, sel.encode(), b"example.com", priv,
                                  canonicalize=(b"relaxed", b"relaxed"),
                                  signature_algorithm=alg,
                                  include_headers=[b"from", b"to", b"subject", b"date",
                                                   b"message-id", b"mime-version",
                                                   b"content-type"]))
        out = b"".join(reversed(sigs)) + msg
        if path:
            with open(path, "wb") as f:
                f.write(out)
        return out


def dns_server(workdir, fixture, ttl=3600):
    """A private unbound serving FIXTURE's zone with a TTL, so that the
    resolvers of authgate and OpenDKIM cache its answers."""
    ub = agdns.Unbound(workdir, fixture.zones(), ttl=ttl)
    return ub.start()


# ---------------------------------------------------------------------------
# The daemons


def authgate(workdir, dns, name="authgate", conf=None, rules=True, socket_kind="inet"):
    """authgate with SPF (MAIL FROM and HELO), DKIM verify, a size limit and
    a per-sender rate limit no message reaches, for every client:
    TrustedNetworks none, since 127.0.0.1 (smtp-source through Postfix) is
    trusted by default and trusted mail is not checked.  Log level info
    (one line per message).  Not started."""
    settings = {
        "LogLevel": "info",
        "TrustedNetworks": "none",
        "SPFCheck": "yes",
        "SPFCheckHelo": "yes",
        "DKIMVerify": "yes",
        "DKIMSign": "no",
        "DMARCCheck": "no",
        "DNSServer": dns.server,
        "DNSTimeout": "2000",
        "DatabaseTimeout": "2000",
        "PolicyCheckInterval": "2",
    }
    if socket_kind == "unix":
        settings["UMask"] = "0000"      # Postfix's smtpd (user postfix) connects
    settings.update(conf or {})
    ag = agtest.Authgate(workdir, socket_kind=socket_kind, conf=settings, name=name)
    agtest.remove_failure_hook(ag.hook)
    r = ag.ctl("init")
    if r.returncode != 0:
        raise RuntimeError(agtest.fmt_run(r))
    if rules:
        rule_add(ag, "--max-size", "20M", "--rate", "messages:100000000/1m:sender",
                 "--comment", "benchmark: size and rate on")
    return ag


def rule_add(ag, *args):
    r = ag.ctl("rule", "add", *args)
    if r.returncode != 0:
        raise RuntimeError("authgatectl rule add: " + agtest.fmt_run(r))
    return r.stdout.strip()


def bulk_rules(ag, count, start=1):
    """COUNT more rules straight into the database (the schema of
    lib/store.c: rules + rule_match), each a size limit for one sender
    that the benchmark traffic never uses, as an operator's list of
    per-sender exceptions grows."""
    import sqlite3
    db = sqlite3.connect(ag.db)
    now = int(time.time())
    with db:
        cur = db.cursor()
        for i in range(start, start + count):
            cur.execute("INSERT INTO rules (priority, enabled, dry_run, comment, "
                        "max_size, max_rcpts, created) VALUES (50, 1, 0, NULL, ?, "
                        "NULL, ?)", (1048576 + i, now))
            rid = cur.lastrowid
            cur.execute("INSERT INTO rule_match (rule_id, field, value) VALUES "
                        "(?, 'sender', ?)", (rid, "u%d@bulk%d.example.org" % (i, i % 97)))
    db.close()


def listening(port, socket):
    """An inet PORT on 127.0.0.1, or the unix SOCKET ("unix:" or "local:"
    PATH), accepts connections."""
    if port:
        return agtest.port_open("127.0.0.1", port)
    return agtest.unix_open(socket.split(":", 1)[1])


def postfix_milter(socket):
    """A milter's socket as Postfix's smtpd_milters writes it."""
    kind, _, rest = socket.partition(":")
    if kind in ("unix", "local"):
        return "unix:" + rest
    port, _, host = rest.partition("@")
    return "inet:%s:%s" % (host, port)


class _Filter:
    """A filter daemon of the benchmarks on a unix socket (UNIX_PREFIX:
    how its config names one) or a loopback TCP port, its output in
    NAME.log, started from ARGV and stopped by PID."""

    def __init__(self, workdir, name, socket_kind, unix_prefix):
        self.name = name
        self.port = None
        if socket_kind == "unix":
            self.path = os.path.join(workdir, name + ".sock")
            self.socket = unix_prefix + self.path
        else:
            self.port = agtest.free_port()
            self.socket = "inet:%d@127.0.0.1" % self.port
        self.log = os.path.join(workdir, name + ".log")
        self.proc = None

    def _start(self, argv):
        self.proc = agtest.Proc(argv, name=self.name, stdout=self.log,
                                stderr=self.log).start()
        if not agtest.wait_until(lambda: listening(self.port, self.socket), 10):
            raise RuntimeError("%s not listening:\n%s" % (self.name, agtest.tail(self.log)))
        return self

    @property
    def pid(self):
        return self.proc.pid

    def stop(self):
        if self.proc:
            self.proc.stop()


class OpenDKIM(_Filter):
    """OpenDKIM in verify mode from a private config, on an inet socket,
    asking the private DNS server (Nameservers; never
    ResolverConfiguration, which crashes under concurrent load here)."""

    def __init__(self, workdir, dns, socket_kind="unix"):
        super().__init__(workdir, "opendkim", socket_kind, "local:")
        self.dir = workdir
        self.conf = os.path.join(workdir, "opendkim.conf")
        self.pidfile = os.path.join(workdir, "opendkim.pid")
        with open(self.conf, "w") as f:
            f.write("# generated by tests/bench/benchlib.py\n"
                    "Mode v\n"
                    "Socket %s\n"
                    "Nameservers 127.0.0.1@%d\n"
                    "RequireSafeKeys no\n"
                    "AuthservID mx.test.invalid\n"
                    # 127.0.0.1 is internal by default: mail from it is
                    # signed, not verified
                    "InternalHosts csl:10.255.255.254\n"
                    "Syslog no\n"
                    "PidFile %s\n"
                    "UMask 000\n" % (self.socket, dns.port, self.pidfile))

    def start(self):
        return self._start([OPENDKIM, "-f", "-x", self.conf])


class NullMilter(_Filter):
    """tests/bench/nullmilter (a libmilter filter that accepts at the end
    of the message), started as `nullmilter -p SOCKET`."""

    def __init__(self, workdir, path, socket_kind="unix"):
        super().__init__(workdir, "nullmilter", socket_kind, "unix:")
        self.binary = path

    def start(self):
        # umask 0: libmilter makes the socket with the process's umask,
        # and Postfix's smtpd needs to write to it (exec: same PID)
        return self._start(["/bin/sh", "-c", 'umask 0; exec "$0" -p "$1"', self.binary,
                            self.socket])


# ---------------------------------------------------------------------------
# /proc


def _stat(pid):
    """(ppid, utime+stime, cutime+cstime) in ticks, or None."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            s = f.read()
    except OSError:
        return None
    f = s[s.rindex(")") + 2:].split()
    return int(f[1]), int(f[11]) + int(f[12]), int(f[13]) + int(f[14])


def cpu_ms(pid):
    """User + system CPU of PID (all its threads), in ms."""
    st = _stat(pid)
    return None if st is None else st[1] * 1000.0 / CLK_TCK


def tree_cpu_ms(pid):
    """CPU of PID, its reaped children and its live children, in ms: for
    Postfix's master, whose children come and go (a child that exits is
    added to the master's cutime/cstime when reaped)."""
    st = _stat(pid)
    if st is None:
        return None
    total = st[1] + st[2]
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        c = _stat(int(d))
        if c is not None and c[0] == pid:
            total += c[1] + c[2]
    return total * 1000.0 / CLK_TCK


def rss_kb(pid):
    try:
        return agtest.proc_stats(pid)["rss_kb"]
    except (OSError, KeyError):
        return None


# ---------------------------------------------------------------------------
# milterload


def parse_result(text):
    """The RESULT line of milterload (tests/bench/milterload) as a dict of
    numbers, or None."""
    for ln in reversed((text or "").splitlines()):
        if ln.startswith("RESULT "):
            d = {}
            for tok in ln.split()[1:]:
                k, _, v = tok.partition("=")
                try:
                    d[k] = float(v) if "." in v else int(v)
                except ValueError:
                    d[k] = v
            return d
    return None


def milterload(path, socket, msgfiles, n=None, secs=None, conc=10, perconn=1,
               sender=SENDER, rcpt=RCPT, keys=None, client=CLIENT, timeout=600):
    """Run milterload; returns (result dict or None, CompletedProcess)."""
    argv = [path, "-q", "-S", socket, "-c", str(conc), "-p", str(perconn),
            "-f", sender, "-r", rcpt, "-a", client, "-H", HELO]
    for m in msgfiles:
        argv += ["-m", m]
    if secs is not None:
        argv += ["-d", str(secs)]
    else:
        argv += ["-n", str(n)]
    if keys:
        argv += ["-k", str(keys)]
    r = agtest.run(argv, timeout=timeout)
    return parse_result(r.stdout), r


# ---------------------------------------------------------------------------
# Numbers and tables


def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def fmt(v, digits=1):
    if v is None:
        return "-"
    if isinstance(v, str):
        return v
    if abs(v) >= 1000:
        return "{:,.0f}".format(v)
    return ("%%.%df" % digits) % v


def table(header, rows):
    """A markdown table (list of lines)."""
    out = ["| " + " | ".join(header) + " |",
           "| " + " | ".join("---" for _ in header) + " |"]
    for r in rows:
        out.append("| " + " | ".join(fmt(c) if not isinstance(c, str) else c
                                     for c in r) + " |")
    return out


def machine():
    """The machine description: lines of markdown."""
    def sh(*argv):
        r = agtest.run(list(argv), timeout=10)
        return (r.stdout or "").strip()
    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            for ln in f:
                if ln.startswith("model name"):
                    model = ln.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = ""
    try:
        with open("/proc/meminfo") as f:
            mem = f.readline().split(":", 1)[1].strip()
    except OSError:
        pass
    head = sh("git", "-C", agtest.SRCDIR, "log", "-1", "--format=%h %s")
    dirty = sh("git", "-C", agtest.SRCDIR, "status", "--porcelain", "--untracked-files=no")
    load = open("/proc/loadavg").read().split()[:3]
    return [
        "| | |", "| --- | --- |",
        "| date | %s |" % time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "| CPUs (nproc) | %s |" % sh("nproc"),
        "| CPU model | %s |" % model,
        "| memory | %s |" % mem,
        "| kernel | %s |" % sh("uname", "-srm"),
        "| git head | %s%s |" % (head.replace("|", "/"), " (with local changes)" if dirty else ""),
        "| load average at start | %s |" % " ".join(load),
        "| OpenSSL | %s |" % sh("openssl", "version"),
        "| Postfix | %s |" % sh("/usr/sbin/postconf", "-dh", "mail_version"),
        "| OpenDKIM | %s |" % (sh(OPENDKIM, "-V").splitlines() or [""])[0],
    ]

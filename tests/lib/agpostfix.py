"""agpostfix: a private Postfix instance on a free 127.0.0.1 port that
relays everything to a private smtp-sink, for end-to-end tests.

    sink = Sink(tmpdir("sink")).start()
    pf = Postfix(tmpdir("pf"), relay_port=sink.port,
                 milter="inet:127.0.0.1:%d" % ag.port).start()
    s = pf.smtp()                       # smtplib.SMTP connected, EHLO done
    ...
    msg = sink.wait_for("Subject: token")  # the dump file text, or None

Everything stays on loopback: Postfix listens on 127.0.0.1 only, does no
DNS, delivers nothing locally and relays only to the sink.  Postfix's own
log goes to a maillog_file in its directory (postlogd).
"""

import glob
import os
import pwd
import re
import shutil
import signal
import smtplib

import agtest
from agtest import diag, free_port, run, tail, wait_until

POSTFIX = shutil.which("postfix", path="/usr/sbin:/usr/bin:/sbin") or "/usr/sbin/postfix"
SMTP_SINK = shutil.which("smtp-sink", path="/usr/sbin:/usr/bin") or "/usr/sbin/smtp-sink"
POSTCONF = shutil.which("postconf", path="/usr/sbin:/usr/bin") or "/usr/sbin/postconf"


def require():
    """Postfix and smtp-sink installed, and root (a private Postfix
    instance is started as root)."""
    agtest.require(POSTFIX)
    agtest.require(SMTP_SINK)
    if os.geteuid() != 0:
        if agtest.IN_CI:
            agtest.check("running as root for Postfix", False, "CI=true: must run as root")
            raise agtest.Abort("not root")
        raise agtest.Skip("a private Postfix needs root")


class Sink:
    """smtp-sink dumping each transaction to a file in DIR."""

    def __init__(self, workdir):
        self.dir = workdir
        self.spool = os.path.join(workdir, "spool")
        os.makedirs(self.spool)
        os.chmod(self.spool, 0o777)      # smtp-sink writes as nobody
        self.port = free_port()
        self.log = os.path.join(workdir, "smtp-sink.log")
        self.proc = None

    def start(self, timeout=10):
        self.proc = agtest.Proc([SMTP_SINK, "-u", "nobody", "-d",
                                 os.path.join(self.spool, "%H%M%S."),
                                 "127.0.0.1:%d" % self.port, "256"],
                                name="smtp-sink", stdout=self.log, stderr=self.log).start()
        if not wait_until(lambda: agtest.port_open("127.0.0.1", self.port), timeout):
            raise RuntimeError("smtp-sink did not listen on %d: %s" % (self.port, tail(self.log)))
        return self

    def stop(self):
        if self.proc:
            self.proc.stop()

    def messages(self):
        """Every dumped transaction, as text (complete files only)."""
        out = []
        for p in sorted(glob.glob(os.path.join(self.spool, "*"))):
            try:
                with open(p, "rb") as f:
                    data = f.read().decode("utf-8", "replace")
            except OSError:
                continue
            out.append(data)
        return out

    def find(self, token):
        """Dumps containing TOKEN."""
        return [m for m in self.messages() if token in m]

    def wait_for(self, token, timeout=15.0):
        """The first dump containing TOKEN (and complete: the end of the
        message has been seen), or None after TIMEOUT."""
        def got():
            for m in self.find(token):
                if m.rstrip().endswith(".") or "\n.\n" in m or m.endswith("\n"):
                    return m
            return None
        return wait_until(got, timeout, 0.1)


class Postfix:
    """A private Postfix instance (config, queue and data directory in
    WORKDIR)."""

    def __init__(self, workdir, relay_port, milter=None, extra=None, chroot=False, qmqp=False):
        """CHROOT: smtpd, cleanup and qmqpd run chrooted in the queue
        directory, as Debian's master.cf has them.  QMQP: a qmqpd on
        another free port (self.qmqp_port) for mail that reaches the
        non_smtpd_milters (see qmqp_send)."""
        self.dir = workdir
        self.chroot = chroot
        self.qmqp_port = free_port() if qmqp else None
        self.conf = os.path.join(workdir, "conf")
        self.queue = os.path.join(workdir, "queue")
        self.data = os.path.join(workdir, "data")
        self.maillog = os.path.join(workdir, "maillog")
        for d in (self.conf, self.queue, self.data):
            os.makedirs(d, exist_ok=True)
        if os.geteuid() == 0:
            # Postfix wants data_directory owned by mail_owner.
            pw = pwd.getpwnam("postfix")
            os.chown(self.data, pw.pw_uid, pw.pw_gid)
        self.port = free_port()
        self.relay_port = relay_port
        self.settings = {
            "compatibility_level": "3.6",
            "queue_directory": self.queue,
            "data_directory": self.data,
            "maillog_file": self.maillog,
            "maillog_file_prefixes": "/var, /dev/stdout, " + workdir,
            "syslog_name": "postfix-agtest",
            "myhostname": "mx.test.invalid",
            "mydomain": "test.invalid",
            "myorigin": "test.invalid",
            "mydestination": "",
            "inet_interfaces": "127.0.0.1",
            # all: XCLIENT ADDR=IPV6:... is refused with ipv4 only.  Postfix
            # still listens on 127.0.0.1 only (inet_interfaces).
            "inet_protocols": "all",
            "mynetworks": "127.0.0.0/8",
            "local_transport": "error:no local delivery in tests",
            "default_transport": "smtp:[127.0.0.1]:%d" % relay_port,
            "relay_transport": "smtp:[127.0.0.1]:%d" % relay_port,
            "relayhost": "",
            "smtp_dns_support_level": "disabled",
            "smtpd_peername_lookup": "no",
            # no: soft_bounce = yes would turn every 5xx the client should
            # see (authgate's 552 5.3.4 included) into 4xx.  Nothing can
            # bounce anywhere but the sink anyway.
            "soft_bounce": "no",
            "notify_classes": "",
            "alias_maps": "",
            "alias_database": "",
            "smtpd_authorized_xclient_hosts": "127.0.0.0/8",
            "smtpd_relay_restrictions": "check_client_access static:OK, reject",
            "smtpd_recipient_restrictions": "",
            "smtpd_client_restrictions": "",
            "smtpd_helo_restrictions": "",
            "smtpd_sender_restrictions": "",
            "smtpd_milters": milter or "",
            "non_smtpd_milters": "",
            "milter_protocol": "6",
            "milter_default_action": "tempfail",
            "milter_connect_timeout": "10s",
            "milter_command_timeout": "20s",
            "milter_content_timeout": "60s",
            "smtp_connect_timeout": "5s",
            "queue_run_delay": "1s",
            "minimal_backoff_time": "1s",
            "maximal_backoff_time": "2s",
            "smtpd_error_sleep_time": "0",
            "smtpd_soft_error_limit": "1000",
            "smtpd_hard_error_limit": "1000",
            "smtpd_client_connection_rate_limit": "0",
            "anvil_rate_time_unit": "60s",
            "smtputf8_enable": "no",
            "biff": "no",
            "append_dot_mydomain": "no",
            "smtp_tls_security_level": "none",
            "smtpd_tls_security_level": "none",
            "message_size_limit": "10240000",
            "smtpd_sasl_auth_enable": "no",
            "qmqpd_authorized_clients": "127.0.0.0/8",
        }
        if extra:
            self.settings.update(extra)
        self.hook = agtest.on_failure(self._diag)
        self.running = False

    def write_config(self):
        with open(os.path.join(self.conf, "main.cf"), "w") as f:
            f.write("# generated by tests/lib/agpostfix.py\n")
            for k, v in self.settings.items():
                f.write("%s = %s\n" % (k, v))
        # Services only: no pickup, no local delivery; chroot only when
        # asked, for the services that talk to milters.
        ch = "y" if self.chroot else "n"
        services = [
            ("127.0.0.1:%d" % self.port, "inet", "n", "-", ch, "-", "-", "smtpd"),
            ("cleanup", "unix", "n", "-", ch, "-", "0", "cleanup"),
            ("qmgr", "unix", "n", "-", "n", "300", "1", "qmgr"),
            ("rewrite", "unix", "-", "-", "n", "-", "-", "trivial-rewrite"),
            ("bounce", "unix", "-", "-", "n", "-", "0", "bounce"),
            ("defer", "unix", "-", "-", "n", "-", "0", "bounce"),
            ("trace", "unix", "-", "-", "n", "-", "0", "bounce"),
            ("verify", "unix", "-", "-", "n", "-", "1", "verify"),
            ("flush", "unix", "n", "-", "n", "1000?", "0", "flush"),
            ("proxymap", "unix", "-", "-", "n", "-", "-", "proxymap"),
            ("smtp", "unix", "-", "-", "n", "-", "-", "smtp"),
            ("relay", "unix", "-", "-", "n", "-", "-", "smtp"),
            ("showq", "unix", "n", "-", "n", "-", "-", "showq"),
            ("error", "unix", "-", "-", "n", "-", "-", "error"),
            ("retry", "unix", "-", "-", "n", "-", "-", "error"),
            ("discard", "unix", "-", "-", "n", "-", "-", "discard"),
            ("anvil", "unix", "-", "-", "n", "-", "1", "anvil"),
            ("scache", "unix", "-", "-", "n", "-", "1", "scache"),
            ("postlog", "unix-dgram", "n", "-", "n", "-", "1", "postlogd"),
        ]
        if self.qmqp_port:
            services.append(("127.0.0.1:%d" % self.qmqp_port, "inet", "n", "-", ch, "-", "-",
                             "qmqpd"))
        with open(os.path.join(self.conf, "master.cf"), "w") as f:
            f.write("# generated by tests/lib/agpostfix.py\n")
            for s in services:
                f.write("%-22s %-10s %-5s %-5s %-5s %-6s %-5s %s\n" % s)

    def postfix(self, *args, timeout=60):
        return run([POSTFIX, "-c", self.conf] + list(args), timeout=timeout)

    def start(self, timeout=30):
        self.write_config()
        # Creates the queue directories with Postfix's ownership and checks
        # the configuration (the output goes to the maillog).
        r = self.postfix("check")
        if r.returncode != 0:
            raise RuntimeError("postfix check failed:\n%s\n%s" % (agtest.fmt_run(r),
                                                                   tail(self.maillog)))
        r = self.postfix("start")
        if r.returncode != 0:
            raise RuntimeError("postfix start failed:\n%s\n%s" % (agtest.fmt_run(r),
                                                                   tail(self.maillog)))
        self.running = True
        agtest.at_cleanup(self.stop)
        if not wait_until(lambda: agtest.port_open("127.0.0.1", self.port), timeout):
            raise RuntimeError("postfix not listening on %d:\n%s" % (self.port, tail(self.maillog)))
        return self

    def master_pid(self):
        try:
            with open(os.path.join(self.queue, "pid", "master.pid")) as f:
                return int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def stop(self):
        if not self.running:
            return
        self.running = False
        pid = self.master_pid()
        r = self.postfix("stop", timeout=30)
        if pid:
            def gone():
                try:
                    os.kill(pid, 0)
                    return False
                except ProcessLookupError:
                    return True
            if not wait_until(gone, 15):
                diag("postfix master %d still running after stop: SIGKILL" % pid)
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        elif r.returncode != 0:
            diag("postfix stop: " + agtest.fmt_run(r))

    def reload(self):
        self.write_config()
        return self.postfix("reload")

    def set(self, **kw):
        self.settings.update(kw)

    def smtp(self, helo="client.example", ehlo=True, timeout=30):
        return agtest.smtp_client(self.port, helo, ehlo, timeout)

    def log(self):
        return agtest.read_text(self.maillog)

    def wait_log(self, text, timeout=5.0):
        """True once TEXT appears in Postfix's maillog (postlogd writes
        it a moment after the event)."""
        return bool(wait_until(lambda: text in self.log(), timeout, 0.1))

    def queue_ids_for(self, token):
        """Queue ids that Postfix's log shows for a message whose
        message-id contains TOKEN."""
        return re.findall(r"postfix-agtest/cleanup\[\d+\]: ([0-9A-F]+): message-id=<[^>]*%s" %
                          re.escape(token), self.log())

    def _diag(self):
        diag("--- postfix maillog (last lines of %s) ---" % self.maillog)
        diag(tail(self.maillog, 20))


def _netstring(b):
    return b"%d:%s," % (len(b), b)


def qmqp_send(port, sender, rcpts, msg, timeout=30):
    """Send MSG (bytes) by QMQP to 127.0.0.1:PORT; mail that arrives this
    way goes through Postfix's non_smtpd_milters.  Returns the server's
    answer: 'K...' (queued), 'Z...' (temporary), 'D...' (permanent)."""
    body = _netstring(msg) + _netstring(sender.encode())
    body += b"".join(_netstring(r.encode()) for r in rcpts)
    data = agtest.exchange("127.0.0.1", port, _netstring(body), timeout)
    length, _, rest = data.partition(b":")
    return rest[:int(length)].decode("utf-8", "replace") if length.isdigit() else data.decode(
        "utf-8", "replace")


def reply(code_msg):
    """smtplib's (code, bytes) -> 'CODE TEXT' on one line."""
    code, msg = code_msg
    if isinstance(msg, bytes):
        msg = msg.decode("utf-8", "replace")
    return "%d %s" % (code, msg.replace("\n", " / "))


def send_raw(s, sender, rcpts, msg, mail_params=""):
    """MAIL/RCPT/DATA by hand (no SIZE= unless given in MAIL_PARAMS),
    stopping at the first refusal.  Returns (stage, 'CODE TEXT', rcpt
    replies) where stage is mail|rcpt|data|eod and the reply is the last
    one seen (the end-of-data reply when stage is 'eod')."""
    cmd = "MAIL FROM:<%s>%s" % (sender, (" " + mail_params) if mail_params else "")
    r = s.docmd(cmd)
    if r[0] >= 400:
        s.rset()
        return "mail", reply(r), []
    rr = []
    for rc in rcpts:
        rr.append(reply(s.docmd("RCPT TO:<%s>" % rc)))
    if not any(x.startswith("2") for x in rr):
        s.rset()
        return "rcpt", rr[-1], rr
    try:
        r = s.data(msg)
    except smtplib.SMTPDataError as e:
        s.rset()
        return "data", reply((e.smtp_code, e.smtp_error)), rr
    if r[0] >= 400:
        try:
            s.rset()
        except smtplib.SMTPException:
            pass
    return "eod", reply(r), rr


class Stack:
    """smtp-sink <- Postfix (smtpd_milters = authgate) on loopback, one per
    test script.  Add rules with stack.ag.add_rule() before start()."""

    def __init__(self, conf=None, pf_extra=None):
        self.sink = Sink(agtest.tmpdir("sink"))
        self.ag = agtest.Authgate(agtest.tmpdir("ag"), conf=conf)
        self.pf = Postfix(agtest.tmpdir("pf"), self.sink.port,
                          milter="inet:127.0.0.1:%d" % self.ag.port, extra=pf_extra)
        self.seq = 0

    def start(self):
        self.sink.start()
        self.ag.start()
        self.pf.start()
        return self

    def token(self, label="m"):
        self.seq += 1
        return "agtok-%s-%d-%d" % (re.sub(r"\W", "", label)[:20], os.getpid(), self.seq)

    def message(self, token, sender, rcpt="bob@example.net", size=0):
        h, b = agtest.make_message(token, size=size, sender=sender, rcpt=rcpt,
                                   msgid="<%s@test.invalid>" % token)
        return agtest.message_bytes(h, b)

    def send(self, sender, rcpts, size=0, mail_params="", token=None, smtp=None,
             helo="client.example"):
        """One message through Postfix (raw MAIL/RCPT/DATA: no SIZE= unless in
        MAIL_PARAMS).  Returns (token, stage, 'CODE TEXT', rcpt replies)."""
        token = token or self.token()
        own = smtp is None
        s = smtp or self.pf.smtp(helo)
        try:
            stage, rep, rr = send_raw(s, sender, rcpts,
                                      self.message(token, sender, rcpts[0], size), mail_params)
        finally:
            if own:
                try:
                    s.quit()
                except (smtplib.SMTPException, OSError):
                    pass
        return token, stage, rep, rr

    def barrier(self, timeout=20):
        """Deliver a plain message and wait for it at the sink, so that
        anything accepted before it has had its chance to arrive too."""
        tok, stage, rep, rr = self.send("barrier@barrier.example", ["bob@example.net"])
        ok = stage == "eod" and rep.startswith("250") and self.sink.wait_for(tok, timeout)
        agtest.check("barrier message delivered", bool(ok), got=(stage, rep, rr))
        return bool(ok)


def queued_id(reply_text):
    """'250 2.0.0 Ok: queued as 4ABCD' -> '4ABCD'."""
    m = re.search(r"queued as (\S+)", reply_text or "")
    return m.group(1) if m else None

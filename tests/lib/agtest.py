"""agtest: small TAP harness and process fixtures for authgate's
integration tests (tests/milter, tests/e2e).

Standard library only; runs under Debian's /usr/bin/python3.

A test script looks like:

    import agtest
    suite = agtest.Suite("milter phases")

    @suite.setup
    def setup():
        suite.ag = agtest.Authgate(suite.tmpdir("ag")).start()

    @suite.case
    def normal_message_accepted():
        ...
        agtest.check("eom accepted", reply.kind == "accept",
                     expected="accept", got=reply)

    suite.run()

Every check() is one TAP test point, labelled "CASE: LABEL".  A case that
raises gets a "not ok" line with the traceback as diagnostics; a case that
makes no check at all is a failure too (a test that cannot fail is a
defect).  require() skips a case (or the whole script, in setup) when a
tool is missing, but fails it when CI=true.  The plan is printed at the
end, so a script that dies half-way has no plan and the TAP driver reports
an error.
"""

import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback

# ---------------------------------------------------------------------------
# Paths

HERE = os.path.dirname(os.path.abspath(__file__))
SRCDIR = os.environ.get("AG_SRCDIR") or os.path.dirname(os.path.dirname(HERE))
BUILDDIR = os.environ.get("AG_BUILDDIR") or SRCDIR
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
KEEP = os.environ.get("AG_KEEP", "") not in ("", "0")


def binpath(name):
    """Path of a built program (filter/NAME), from AG_BUILDDIR."""
    for base in (BUILDDIR, SRCDIR):
        p = os.path.join(base, "filter", name)
        if os.path.exists(p):
            return p
    return os.path.join(BUILDDIR, "filter", name)


AUTHGATE = binpath("authgate")
AUTHGATECTL = binpath("authgatectl")

# ---------------------------------------------------------------------------
# TAP


class Skip(Exception):
    """Raised to skip the current case (or, from setup, every case)."""


class Abort(Exception):
    """Raised by check(..., fatal=True): stop the case after a failure."""


class CaseTimeout(Exception):
    pass


_out = sys.stdout


def _emit(line):
    _out.write(line + "\n")
    _out.flush()


def diag(*lines):
    """Print TAP diagnostics ('# ...'), one per line of text."""
    for text in lines:
        for ln in str(text).splitlines() or [""]:
            _emit("# " + ln)


def _short(v, limit=2000):
    s = v if isinstance(v, str) else repr(v)
    if len(s) > limit:
        s = s[:limit] + "...[%d more chars]" % (len(s) - limit)
    return s


class _State:
    n = 0
    failed = 0
    case = None          # name of the running case
    case_checks = 0
    case_failed = 0


_st = _State()


def _label(label):
    label = re.sub(r"[\r\n#]", " ", label)
    if _st.case:
        return "%s: %s" % (_st.case, label)
    return label


def ok(cond, label, detail=None):
    """One TAP test point."""
    _st.n += 1
    _st.case_checks += 1
    if cond:
        _emit("ok %d - %s" % (_st.n, _label(label)))
    else:
        _st.failed += 1
        _st.case_failed += 1
        _emit("not ok %d - %s" % (_st.n, _label(label)))
        if detail:
            diag(detail)
        for hook in list(_failure_hooks):
            try:
                hook()
            except Exception as e:  # never let a diagnostic hook break a run
                diag("(failure hook error: %r)" % (e,))
    return bool(cond)


_NOTSET = object()


def check(label, cond, detail=None, expected=_NOTSET, got=_NOTSET, fatal=False):
    """A test point that, on failure, prints expected vs got (and DETAIL).
    With fatal=True a failure also ends the current case."""
    parts = []
    if expected is not _NOTSET:
        parts.append("expected: " + _short(expected))
    if got is not _NOTSET:
        parts.append("     got: " + _short(got))
    if detail:
        parts.append(_short(detail, 6000))
    res = ok(cond, label, "\n".join(parts) if parts else None)
    if not res and fatal:
        raise Abort(label)
    return res


def check_eq(label, got, expected, detail=None, fatal=False):
    return check(label, got == expected, detail, expected=expected, got=got, fatal=fatal)


def check_match(label, pattern, text, detail=None, fatal=False):
    m = re.search(pattern, text or "", re.M)
    check(label, m is not None, detail, expected="text matching /%s/" % pattern,
          got=text, fatal=fatal)
    return m


def skip(label, reason):
    _st.n += 1
    _st.case_checks += 1
    _emit("ok %d - %s # SKIP %s" % (_st.n, _label(label), reason.replace("#", "")))


def require(what, kind="tool"):
    """Make sure a tool (on PATH or an absolute path), a Debian package
    (kind='package') or a Python module (kind='module') is present.
    Missing: Skip, or a failing test point when CI=true (CI must have
    everything)."""
    present = False
    if kind == "tool":
        present = (os.access(what, os.X_OK) if os.path.isabs(what)
                   else shutil.which(what, path=os.environ.get("PATH", "") +
                                     ":/usr/sbin:/sbin") is not None)
    elif kind == "package":
        r = subprocess.run(["dpkg-query", "-W", "-f=${Status}", what],
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        present = r.returncode == 0 and "install ok installed" in r.stdout
    elif kind == "module":
        try:
            __import__(what)
            present = True
        except ImportError:
            present = False
    else:
        raise ValueError(kind)
    if present:
        return
    reason = "%s %s is not installed (tests/deps.sh installs it)" % (kind, what)
    if IN_CI:
        check("required %s %s present" % (kind, what), False,
              "CI=true: a missing dependency is a failure, not a skip")
        raise Abort(reason)
    raise Skip(reason)


_failure_hooks = []


def on_failure(fn):
    """Call FN (to print diagnostics) after every failing test point."""
    _failure_hooks.append(fn)
    return fn


def remove_failure_hook(fn):
    if fn in _failure_hooks:
        _failure_hooks.remove(fn)


# ---------------------------------------------------------------------------
# Cleanup

_cleanups = []


def at_cleanup(fn, *args):
    """Register FN(*ARGS) to run at the end of the script (LIFO)."""
    _cleanups.append((fn, args))


def run_cleanups():
    while _cleanups:
        fn, args = _cleanups.pop()
        try:
            fn(*args)
        except Exception as e:
            diag("cleanup %s failed: %r" % (getattr(fn, "__name__", fn), e))


def _on_signal(signum, frame):
    raise SystemExit("killed by signal %d" % signum)


_tmproot = None


def tmpdir(name="t"):
    """A new directory under one per-script temp dir in /tmp, removed at
    exit (kept when AG_KEEP=1)."""
    global _tmproot
    if _tmproot is None:
        _tmproot = tempfile.mkdtemp(prefix="agtest-", dir="/tmp")
        os.chmod(_tmproot, 0o755)   # Postfix and smtp-sink users traverse it

        def _rm():
            if KEEP or (_st.failed and os.environ.get("AG_KEEP_FAILED")):
                diag("kept temp dir %s" % _tmproot)
            else:
                shutil.rmtree(_tmproot, ignore_errors=True)
        at_cleanup(_rm)
    d = tempfile.mkdtemp(prefix=name + "-", dir=_tmproot)
    os.chmod(d, 0o755)
    return d


# ---------------------------------------------------------------------------
# Suite


class Suite:
    """Named cases, run in order, each one under a timeout."""

    def __init__(self, name, case_timeout=90, total_timeout=540):
        self.name = name
        self.cases = []
        self._setup = None
        self.case_timeout = case_timeout
        self.total_timeout = total_timeout
        self.started = time.monotonic()

    def setup(self, fn):
        self._setup = fn
        return fn

    def case(self, fn=None, *, name=None, timeout=None):
        def reg(f):
            self.cases.append((name or f.__name__.replace("_", " "), f,
                               timeout or self.case_timeout))
            return f
        return reg(fn) if fn is not None else reg

    def tmpdir(self, name="t"):
        return tmpdir(name)

    def _alarm(self, signum, frame):
        raise CaseTimeout()

    def run(self):
        signal.signal(signal.SIGTERM, _on_signal)
        signal.signal(signal.SIGINT, _on_signal)
        signal.signal(signal.SIGALRM, self._alarm)
        diag("%s (AG_BUILDDIR=%s)" % (self.name, BUILDDIR))
        setup_error = None
        try:
            if self._setup:
                _st.case = "setup"
                _st.case_checks = _st.case_failed = 0
                signal.alarm(120)
                try:
                    self._setup()
                finally:
                    signal.alarm(0)
                if _st.case_failed:
                    setup_error = "setup failed"
        except Skip as e:
            _st.case = None
            for name, _, _ in self.cases:
                _st.case = name
                skip("case", str(e))
            self._finish()
            return
        except BaseException as e:
            if isinstance(e, SystemExit):
                ok(False, "interrupted (%s)" % e)
                self._finish()
                raise
            setup_error = "setup failed: %s" % (e if isinstance(e, Abort) else
                                                "".join(traceback.format_exception(e)))
        if setup_error:
            _st.case = "setup"
            diag(setup_error)
            for hook in list(_failure_hooks):
                try:
                    hook()
                except Exception:
                    pass
            for name, _, _ in self.cases:
                _st.case = name
                ok(False, "not run: setup failed")
            self._finish()
            return

        try:
            for name, fn, tmo in self.cases:
                self._run_case(name, fn, tmo)
        finally:
            self._finish()

    def _run_case(self, name, fn, tmo):
        _st.case = name
        _st.case_checks = _st.case_failed = 0
        t0 = time.monotonic()
        left = self.total_timeout - (t0 - self.started)
        if left < 5:
            skip("case", "script time budget (%ds) used up" % self.total_timeout)
            return
        signal.alarm(int(min(tmo, left)))
        try:
            fn()
            if _st.case_checks == 0:
                ok(False, "case made no assertion")
        except Skip as e:
            skip("case", str(e))
        except Abort as e:
            diag("case stopped after fatal failure: %s" % e)
        except CaseTimeout:
            ok(False, "timed out after %ds" % tmo)
        except SystemExit as e:
            ok(False, "interrupted (%s)" % e)
            raise
        except BaseException:
            ok(False, "unexpected exception",
               "".join(traceback.format_exception(*sys.exc_info())))
        finally:
            signal.alarm(0)
        diag("case %r took %.1fs" % (name, time.monotonic() - t0))

    def _finish(self):
        signal.alarm(0)
        _st.case = None
        run_cleanups()
        diag("%s: %d test points, %d failed, %.1fs" %
             (self.name, _st.n, _st.failed, time.monotonic() - self.started))
        _emit("1..%d" % _st.n)
        sys.stdout.flush()
        os._exit(1 if _st.failed else 0)


# ---------------------------------------------------------------------------
# Networking and processes


_given_ports = set()


def free_port(family=socket.AF_INET, host="127.0.0.1"):
    """A TCP (and UDP) port that is free on HOST right now.  Chosen at
    random from 10000-31999, below the kernel's ephemeral range, never
    twice in one script: asking the kernel for port 0 hands the port just
    released to the next caller, which is often a test script running
    beside this one (make -j2 check), before our server has bound it."""
    rnd = random.SystemRandom()
    for _ in range(500):
        port = rnd.randrange(10000, 32000)
        if port in _given_ports:
            continue
        try:
            with socket.socket(family, socket.SOCK_STREAM) as s:
                s.bind((host, port))
            with socket.socket(family, socket.SOCK_DGRAM) as u:
                u.bind((host, port))
        except OSError:
            continue
        _given_ports.add(port)
        return port
    raise RuntimeError("no free port found on %s" % host)


def wait_until(pred, timeout=10.0, interval=0.05, what="condition"):
    """Poll PRED until it returns a true value; return it, or None on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() >= deadline:
            return None
        time.sleep(interval)


def port_open(host, port, family=socket.AF_INET):
    try:
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.settimeout(1.0)
            s.connect((host, port))
            return True
    except OSError:
        return False


def exchange(host, port, data, timeout=10.0):
    """Connect to HOST:PORT (IPv4 or IPv6), send DATA (None: nothing) and
    read until the server closes; returns the bytes read."""
    with socket.create_connection((host, port), timeout=timeout) as s:
        if data:
            s.sendall(data)
        out = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return out
            out += chunk


def unix_open(path):
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(1.0)
            s.connect(path)
            return True
    except OSError:
        return False


def proc_stats(pid):
    """Open files, threads and resident memory (kB) of PID."""
    d = {"fds": len(os.listdir("/proc/%d/fd" % pid))}
    with open("/proc/%d/status" % pid) as f:
        for ln in f:
            k, _, v = ln.partition(":")
            if k == "Threads":
                d["threads"] = int(v)
            elif k == "VmRSS":
                d["rss_kb"] = int(v.split()[0])
    return d


def idle_stats(pid):
    """proc_stats at rest: the fewest open files of 5 looks 0.1 s apart
    (the daemon opens its database now and then for a moment)."""
    samples = []
    for _ in range(5):
        samples.append(proc_stats(pid))
        time.sleep(0.1)
    return min(samples, key=lambda s: s["fds"])


def read_text(path):
    """The text of PATH (bad UTF-8 replaced), or "" when it cannot be read."""
    try:
        with open(path, "r", errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def smtp_client(port, helo="client.example", ehlo=True, timeout=30, source=None):
    """An smtplib.SMTP connected to 127.0.0.1:PORT (from SOURCE, an
    address, when given), EHLO (or HELO) done."""
    import smtplib
    s = smtplib.SMTP(local_hostname=helo, timeout=timeout,
                     source_address=(source, 0) if source else None)
    s.connect("127.0.0.1", port)
    if ehlo:
        s.ehlo(helo)
    else:
        s.helo(helo)
    return s


def tail(path, n=40):
    try:
        with open(path, "r", errors="replace") as f:
            lines = f.read().splitlines()
    except OSError as e:
        return "(cannot read %s: %s)" % (path, e)
    return "\n".join(lines[-n:])


class Proc:
    """A child process, started in its own session, output to files,
    stopped by its PID."""

    def __init__(self, argv, name=None, stdout=None, stderr=None, env=None,
                 cwd=None, stdin=subprocess.DEVNULL):
        self.argv = [str(a) for a in argv]
        self.name = name or os.path.basename(self.argv[0])
        self.stdout_path = stdout
        self.stderr_path = stderr
        self.env = env
        self.cwd = cwd
        self.stdin = stdin
        self.p = None

    def start(self):
        out = open(self.stdout_path, "ab") if self.stdout_path else subprocess.DEVNULL
        err = open(self.stderr_path, "ab") if self.stderr_path else subprocess.DEVNULL
        try:
            self.p = subprocess.Popen(self.argv, stdout=out, stderr=err,
                                      stdin=self.stdin, env=self.env, cwd=self.cwd,
                                      start_new_session=True, close_fds=True)
        finally:
            for f in (out, err):
                if f is not subprocess.DEVNULL:
                    f.close()
        at_cleanup(self.stop)
        return self

    @property
    def pid(self):
        return self.p.pid if self.p else None

    def alive(self):
        return self.p is not None and self.p.poll() is None

    def returncode(self):
        return None if self.p is None else self.p.poll()

    def send_signal(self, sig):
        if self.alive():
            os.kill(self.p.pid, sig)

    def wait(self, timeout):
        try:
            return self.p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, sig=signal.SIGTERM, timeout=10.0):
        """Signal the process by PID; SIGKILL it after TIMEOUT.  Returns
        the exit status (negative for a signal)."""
        if self.p is None:
            return None
        if self.p.poll() is None:
            try:
                os.kill(self.p.pid, sig)
            except ProcessLookupError:
                pass
            if self.wait(timeout) is None:
                diag("%s (pid %d) ignored signal %d for %.0fs: SIGKILL" %
                     (self.name, self.p.pid, sig, timeout))
                try:
                    os.kill(self.p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.wait(5)
        return self.p.poll()


def run(argv, timeout=60, input=None, env=None, cwd=None):
    """Run a command to completion; returns CompletedProcess with text
    stdout/stderr (a timeout gives returncode None and a note in stderr)."""
    argv = [str(a) for a in argv]
    try:
        return subprocess.run(argv, input=input, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, timeout=timeout,
                              env=env, cwd=cwd, errors="replace")
    except subprocess.TimeoutExpired as e:
        def _s(v):
            if v is None:
                return ""
            return v.decode(errors="replace") if isinstance(v, bytes) else v
        return subprocess.CompletedProcess(argv, None, _s(e.stdout),
                                           _s(e.stderr) + "\n(timed out after %ss)" % timeout)
    except OSError as e:
        return subprocess.CompletedProcess(argv, 127, "", "cannot run %s: %s" % (argv[0], e))


def fmt_run(r):
    return "$ %s\nexit %s\nstdout:\n%s\nstderr:\n%s" % (
        " ".join(r.args), r.returncode, r.stdout, r.stderr)


# ---------------------------------------------------------------------------
# authgate


def parse_decision(text):
    """Parse a per-message line 'QID: client=NAME[IP] helo=H from=<S>
    rcpts=N size=B action=A rule=R reason=T [dry_run=yes would=X]' into a
    dict (keys 'qid' and every key=value field); None if TEXT is not one."""
    m = re.match(r"^(\S+): (client=.*)$", text)
    if not m or " action=" not in text:
        return None
    d = {"qid": m.group(1), "line": text}
    for tok in m.group(2).split(" "):
        if "=" in tok:
            k, v = tok.split("=", 1)
            d[k] = v
    return d


class Authgate:
    """The daemon under test, with a generated config: an inet socket on a
    free loopback port (or unix / inet6), its database in the temp dir,
    running in the foreground with stderr (its log) captured to a file."""

    def __init__(self, workdir, socket_kind="inet", conf=None, db=None, name="authgate"):
        self.dir = workdir
        self.name = name
        self.socket_kind = socket_kind
        self.db = db or os.path.join(workdir, "authgate.db")
        self.conf_path = os.path.join(workdir, "authgate.conf")
        self.log_path = os.path.join(workdir, name + ".log")
        self.out_path = os.path.join(workdir, name + ".out")
        self.pid_file = os.path.join(workdir, name + ".pid")
        if socket_kind == "inet":
            self.port = free_port()
            self.socket = "inet:%d@127.0.0.1" % self.port
        elif socket_kind == "inet6":
            self.port = free_port(socket.AF_INET6, "::1")
            self.socket = "inet6:%d@::1" % self.port
        elif socket_kind == "unix":
            self.port = None
            self.sock_path = os.path.join(workdir, name + ".sock")
            self.socket = "unix:" + self.sock_path
        else:
            raise ValueError(socket_kind)
        self.settings = {
            "Socket": self.socket,
            "Database": self.db,
            "AuthservID": "mx.test.invalid",
            "PidFile": self.pid_file,
            "LogLevel": "debug",
            "PolicyCheckInterval": "1",
            "DatabaseTimeout": "500",
            # Never the system's resolver (it is off loopback): tests that
            # check SPF point DNSServer at their own DNS server.
            "DNSServer": "127.0.0.1@9",
            "DNSTimeout": "500",
            "SPFCheck": "no",
            # DMARC needs a From header and DNS: the DMARC tests turn it on
            "DMARCCheck": "no",
            # authgatectl counters reaches the daemon here (never the
            # system-wide default, which parallel tests would share)
            "ControlSocket": os.path.join(workdir, name + ".ctl"),
        }
        if conf:
            self.settings.update(conf)
        self.proc = None
        self._log_offset = 0
        self.hook = on_failure(self._diag)
        self.write_config()
        if os.environ.get("AG_SANITIZED"):
            # runs after the daemon is stopped (cleanups are LIFO)
            at_cleanup(self._sanitizer_check)

    def _sanitizer_check(self):
        """Under a sanitizer build: one test point saying the daemon's
        log holds no AddressSanitizer, LeakSanitizer or UBSan report."""
        try:
            with open(self.log_path, "rb") as f:
                data = f.read().decode("utf-8", "replace")
        except OSError:
            return
        rx = re.compile(r"ERROR: (Address|Leak|Thread)Sanitizer|runtime error:")
        bad = [ln for ln in data.splitlines() if rx.search(ln)]
        check("%s: no sanitizer report in its log" % self.name, not bad,
              "\n".join(bad[:20]) + "\n" + tail(self.log_path, 60) if bad else None)

    # -- configuration --
    def write_config(self, **extra):
        self.settings.update({k.replace("_", "-"): v for k, v in extra.items()})
        with open(self.conf_path, "w") as f:
            f.write("# generated by tests/lib/agtest.py\n")
            for k, v in self.settings.items():
                if v is not None:
                    f.write("%s %s\n" % (k, v))
        return self.conf_path

    # -- process --
    def start(self, wait=True, timeout=15.0, extra_args=(), prefix=()):
        """Start `authgate -f -c CONF` and wait until it says it is
        listening and its socket accepts connections."""
        if self.proc and self.proc.alive():
            raise RuntimeError("authgate already running")
        self._log_offset = os.path.getsize(self.log_path) if os.path.exists(self.log_path) else 0
        self.started_in = _st.case
        self.proc = Proc(list(prefix) + [AUTHGATE, "-f", "-c", self.conf_path] + list(extra_args),
                         name=self.name, stdout=self.out_path, stderr=self.log_path).start()
        if wait:
            self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout=15.0):
        def ready():
            if not self.proc.alive():
                raise RuntimeError("authgate exited with status %s before it was ready:\n%s" %
                                   (self.proc.returncode(), tail(self.log_path)))
            if not any("listening on" in ln for ln in self.log_lines(since_start=True)):
                return False
            return self.accepts()
        if not wait_until(ready, timeout, 0.05):
            raise RuntimeError("authgate not ready after %.0fs (no 'listening on' line or "
                               "socket closed):\n%s" % (timeout, tail(self.log_path)))

    def accepts(self):
        if self.socket_kind == "inet":
            return port_open("127.0.0.1", self.port)
        if self.socket_kind == "inet6":
            return port_open("::1", self.port, socket.AF_INET6)
        return unix_open(self.sock_path)

    def alive(self):
        return self.proc is not None and self.proc.alive()

    def stop(self, timeout=10.0):
        """SIGTERM and wait (SIGKILL after TIMEOUT); returns the status."""
        if self.proc is None:
            return None
        rc = self.proc.stop(signal.SIGTERM, timeout)
        return rc

    def terminate(self):
        """SIGTERM without waiting (the end-of-script cleanup waits)."""
        if self.proc is not None:
            self.proc.send_signal(signal.SIGTERM)

    def reload(self):
        self.proc.send_signal(signal.SIGHUP)

    # -- log --
    def log_lines(self, since_start=False):
        """The TEXT of every 'authgate[PID]: TEXT' line so far."""
        try:
            with open(self.log_path, "rb") as f:
                if since_start:
                    f.seek(self._log_offset)
                data = f.read().decode("utf-8", "replace")
        except OSError:
            return []
        out = []
        for ln in data.splitlines():
            m = re.match(r"^\S*authgate\[\d+\]: ?(.*)$", ln)
            if m:
                out.append(m.group(1))
        return out

    def log_mark(self):
        """A position in the log, for wait_log(..., since=MARK)."""
        return len(self.log_lines())

    def wait_log(self, pattern, timeout=5.0, since=0):
        """First log line at index >= SINCE matching PATTERN (regex), or None."""
        rx = re.compile(pattern)

        def find():
            for ln in self.log_lines()[since:]:
                if rx.search(ln):
                    return ln
            return None
        return wait_until(find, timeout)

    def decisions(self, since=0):
        out = []
        for ln in self.log_lines()[since:]:
            d = parse_decision(ln)
            if d:
                out.append(d)
        return out

    def wait_decision(self, qid=None, timeout=5.0, since=0, count=1):
        """Wait for COUNT decision lines (with QID if given) after SINCE;
        returns the list (possibly shorter on timeout)."""
        def got():
            ds = [d for d in self.decisions(since) if qid is None or d["qid"] == qid]
            return ds if len(ds) >= count else None
        r = wait_until(got, timeout)
        if r is None:
            r = [d for d in self.decisions(since) if qid is None or d["qid"] == qid]
        return r

    def _diag(self):
        # Only the instance(s) that matter now: running, or started by
        # the current case (or by setup).
        if self.proc is None or not (self.proc.alive() or
                                     getattr(self, "started_in", None) in (_st.case, "setup")):
            return
        if os.path.exists(self.log_path):
            diag("--- %s log (last lines of %s) ---" % (self.name, self.log_path))
            diag(tail(self.log_path, 25))
            if self.proc is not None and not self.proc.alive():
                diag("--- %s is NOT running (exit status %s) ---" %
                     (self.name, self.proc.returncode()))

    # -- admin CLI --
    def ctl(self, *args, timeout=30):
        return run([AUTHGATECTL, "-c", self.conf_path, "-d", self.db] + list(args), timeout=timeout)

    def add_rule(self, *args):
        """authgatectl rule add ARGS...; returns the new id (str).  Raises
        Abort (after a failing check) when the CLI fails."""
        r = self.ctl("rule", "add", *args)
        m = re.search(r"\d+", r.stdout or "")
        if r.returncode != 0 or not m:
            check("authgatectl rule add %s" % " ".join(args), False, fmt_run(r))
            raise Abort("authgatectl rule add failed")
        return m.group(0)

    def del_rule(self, rid):
        r = self.ctl("rule", "del", str(rid))
        if r.returncode != 0:
            check("authgatectl rule del %s" % rid, False, fmt_run(r))
            raise Abort("authgatectl rule del failed")

    # -- milter client --
    def client(self, timeout=10.0):
        import milterclient
        return milterclient.MilterClient(self.socket, timeout=timeout)


def authgate_version():
    """The output of `authgate -V`, or None when the daemon is not built
    or prints no version."""
    if not os.access(AUTHGATE, os.X_OK):
        return None
    r = run([AUTHGATE, "-V"], timeout=10)
    m = re.search(r"authgate \S+", (r.stdout or "") + (r.stderr or ""))
    return m.group(0) if (r.returncode == 0 and m) else None


def require_authgate():
    """Fail (not skip: the daemon is the thing under test) when the daemon
    is not built or does not answer -V."""
    v = authgate_version()
    check("authgate -V prints a version", v is not None,
          expected="authgate VERSION from %s -V" % AUTHGATE,
          got=fmt_run(run([AUTHGATE, "-V"], timeout=10)) if os.path.exists(AUTHGATE)
          else "missing " + AUTHGATE, fatal=True)
    return v


# ---------------------------------------------------------------------------
# Messages


def make_message(subject="test", size=0, sender="alice@example.org",
                 rcpt="bob@example.net", extra_headers=(), msgid=None, line=b""):
    """A message as (headers, body): headers a list of (name, value),
    body bytes with CRLF lines, padded with text lines to about SIZE bytes
    of body when SIZE is given."""
    msgid = msgid or "<%s.%d@test.invalid>" % (re.sub(r"\W", "", subject)[:20] or "m",
                                               int(time.time() * 1e6))
    headers = [("From", "<%s>" % sender), ("To", "<%s>" % rcpt),
               ("Subject", subject), ("Message-ID", msgid),
               ("Date", time.strftime("%a, %d %b %Y %H:%M:%S +0000", time.gmtime()))]
    headers += list(extra_headers)
    body = b"Hello, this is a test message.\r\n"
    if size:
        filler = line or b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789\r\n"
        while len(body) < size:
            body += filler
    return headers, body


def message_bytes(headers, body):
    return b"".join(("%s: %s\r\n" % (k, v)).encode() for k, v in headers) + b"\r\n" + body


# ---------------------------------------------------------------------------
# Milter-level helpers

def open_session(ag, family="4", address="192.0.2.10", hostname="client.example",
                 port=40000, helo="client.example", what="session"):
    """A milter client to AG that has negotiated, sent connect and helo;
    each step is checked (fatal), since nothing after it means anything
    otherwise."""
    c = ag.client()
    c.negotiate()
    r = c.connect(hostname, family, port, address)
    check("%s: connect goes on" % what, r.passes, expected="continue", got=r, fatal=True)
    r = c.helo(helo)
    check("%s: helo goes on" % what, r.passes, expected="continue", got=r, fatal=True)
    return c


_qid_seq = [0]


def new_qid():
    """A fresh Postfix-looking queue id, unique in this run."""
    _qid_seq[0] += 1
    return "%X%05X" % (os.getpid() & 0xFFFFF, _qid_seq[0])


def check_decision(ag, qid, action, rule=None, reason=None, since=0, timeout=5.0, extra=None,
                   what="log line"):
    """Wait for the decision line of QID and check its action= (and rule=,
    reason=, other fields in EXTRA when given).  Returns the parsed line
    (or None)."""
    ds = ag.wait_decision(qid=qid, since=since, timeout=timeout)
    if not check("%s for %s present" % (what, qid), len(ds) >= 1,
                 expected="a line '%s: client=... action=%s ...'" % (qid, action),
                 got="\n".join(ag.log_lines()[since:][-15:])):
        return None
    d = ds[-1]
    want = {"action": action}
    if rule is not None:
        want["rule"] = str(rule)
    if reason is not None:
        want["reason"] = reason
    if extra:
        want.update(extra)
    got = {k: d.get(k) for k in want}
    check("%s: %s" % (what, " ".join("%s=%s" % kv for kv in want.items())), got == want,
          expected=want, got=d["line"])
    empty = [k for k, v in d.items() if v == ""]
    check("%s: no field without a value" % what, not empty,
          expected="every key=value with a value", got="empty %s in: %s" % (empty, d["line"]))
    return d


# ---------------------------------------------------------------------------
# Message headers (added for the SPF tests; shared by any test that checks
# what authgate adds to a message)


def unfold(value):
    """A header value with its folding (CRLF or LF followed by white space)
    undone (RFC 5322 2.2.3)."""
    return re.sub(r"\r?\n(?=[ \t])", "", value)


def header_fields(text):
    """The header block of a message (or smtp-sink dump) TEXT as a list of
    (name, unfolded value) in order; the value has its leading white space
    removed."""
    head = re.split(r"\r?\n\r?\n", text, 1)[0]
    out = []
    for ln in re.split(r"\r?\n(?![ \t])", head):
        if ":" not in ln:
            continue
        name, _, value = ln.partition(":")
        out.append((name.strip(), unfold(value).strip()))
    return out


def authres_results(value):
    """Parse an Authentication-Results VALUE with python3-authres (the
    module must be there: require('authres', 'module')).  Returns
    (authserv_id, [(method, result, reason, {'ptype.property': value})])."""
    import authres
    h = authres.AuthenticationResultsHeader.parse("Authentication-Results: " + unfold(value))
    res = []
    for r in h.results:
        props = {"%s.%s" % (p.type, p.name): p.value for p in r.properties}
        res.append((r.method, r.result, r.reason, props))
    return h.authserv_id, res

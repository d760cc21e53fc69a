"""agload: mail load through a private Postfix (agpostfix.Stack), with
every message accounted for, for the fault tests (t_kill.py, t_hup.py).

    load = Load(stack, threads=4).start()
    ...                                  # kill or reload authgate meanwhile
    load.stop()                          # no new messages from here on
    load.drain(timeout=60)               # resend what got 4xx until accepted
    flush_queue(stack.pf)                # Postfix's queue empty
    c = count(stack, load)               # sent / deferred / delivered / lost

Each message carries a unique token (Subject and Message-ID), so the sink
can say how often each one arrived.  The client behaves like a sending
MTA: a 4xx reply at any stage means the message stays with the client and
is sent again later (in a new session); a 5xx means it is bounced (counted:
none is expected in these tests).  A message whose outcome the client
cannot know (the connection broke after the end of data, before the
reply) is counted as uncertain: a real client would send it again and
that could deliver it twice.

Standard library only; the sending threads never call agtest.check (the
TAP output stays in the main thread).
"""

import collections
import glob
import os
import re
import smtplib
import threading
import time
import traceback

import agtest
import agpostfix

POSTQUEUE = "/usr/sbin/postqueue"

TOKEN_RX = re.compile(r"^Subject: (agtok-\S+)\r?$", re.M)


class Msg:
    """One message and what happened to it at the client."""

    __slots__ = ("token", "attempts", "deferrals", "accepted", "qid", "rejected",
                 "uncertain", "not_before")

    def __init__(self, token):
        self.token = token
        self.attempts = 0
        self.deferrals = []       # 'stage CODE TEXT' of each 4xx
        self.accepted = False     # 250 after the end of data
        self.qid = None
        self.rejected = None      # the 5xx, if any
        self.uncertain = None     # what broke, if the outcome is unknown
        self.not_before = 0.0


class Load:
    """THREADS clients, each sending up to PER_SESSION messages per SMTP
    session, as fast as Postfix takes them (or one every PACE seconds per
    thread)."""

    def __init__(self, stack, threads=4, per_session=3, size=1500, retry_delay=0.5,
                 pace=0.0, sender="load@load.example", rcpt="bob@example.net"):
        self.st = stack
        self.nthreads = threads
        self.per_session = per_session
        self.size = size
        self.retry_delay = retry_delay
        self.pace = pace
        self.sender = sender
        self.rcpt = rcpt
        self.msgs = {}                       # token -> Msg, in creation order
        self.retry = collections.deque()     # Msgs to send again
        self.lock = threading.Lock()
        self.producing = threading.Event()
        self.running = threading.Event()
        self.threads = []
        self.seq = 0
        self.errors = []                     # exceptions outside a message
        self.replies = collections.Counter()  # 'stage CODE' of every refusal

    # -- control --
    def start(self):
        self.producing.set()
        self.running.set()
        for i in range(self.nthreads):
            t = threading.Thread(target=self._run, args=(i,), daemon=True)
            t.start()
            self.threads.append(t)
        return self

    def stop(self):
        """No new messages from now on (retries go on until drain)."""
        self.producing.clear()

    def drain(self, timeout=60.0):
        """Let the threads resend every deferred message until it is
        accepted (or TIMEOUT passes); then stop them.  True when nothing is
        left to send."""
        self.stop()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                left = len(self.retry) + sum(1 for m in self.msgs.values()
                                              if m.attempts and not self._done(m))
            if left == 0:
                break
            time.sleep(0.2)
        self.running.clear()
        for t in self.threads:
            t.join(30)
        with self.lock:
            return not self.retry and all(self._done(m) for m in self.msgs.values())

    @staticmethod
    def _done(m):
        return m.accepted or m.rejected is not None or m.uncertain is not None

    # -- sending --
    def _next(self):
        """A message to send now: a due retry first, else a new one (while
        producing); None when there is nothing to do right now."""
        with self.lock:
            if self.retry and self.retry[0].not_before <= time.monotonic():
                return self.retry.popleft()
            if not self.producing.is_set():
                return None
            self.seq += 1
            tok = "agtok-load-%d-%d" % (os.getpid(), self.seq)
            m = self.msgs[tok] = Msg(tok)
            return m

    def _defer(self, m, what):
        with self.lock:
            m.deferrals.append(what)
            m.not_before = time.monotonic() + self.retry_delay
            self.retry.append(m)
            self.replies[" ".join(what.split()[:2])] += 1

    def _run(self, idx):
        try:
            self._loop()
        except Exception:                   # reported by the test (errors)
            with self.lock:
                self.errors.append(traceback.format_exc())

    def _loop(self):
        while self.running.is_set():
            m = self._next()
            if m is None:
                time.sleep(0.05)
                continue
            try:
                s = self.st.pf.smtp(timeout=90)
            except (OSError, smtplib.SMTPException) as e:
                self._defer(m, "connect %r" % (e,))
                time.sleep(0.1)
                continue
            try:
                n = 0
                while m is not None:
                    m.attempts += 1
                    if not self._send_one(s, m):
                        break          # a 4xx or an error: a new session
                    n += 1
                    if self.pace:
                        time.sleep(self.pace)
                    if n >= self.per_session or not self.running.is_set():
                        break
                    m = self._next()
            finally:
                try:
                    s.quit()
                except (OSError, smtplib.SMTPException):
                    s.close()

    def _send_one(self, s, m):
        """One transaction on session S; True when the session can go on."""
        body = self.st.message(m.token, self.sender, self.rcpt, self.size)
        stage = "mail"
        try:
            code, text = s.docmd("MAIL FROM:<%s>" % self.sender)
            if code == 250:
                stage = "rcpt"
                code, text = s.docmd("RCPT TO:<%s>" % self.rcpt)
            if code == 250:
                stage = "data"
                code, text = s.docmd("DATA")
                if code == 354:
                    stage = "eod"
                    data = re.sub(rb"(?m)^\.", b"..", body)
                    if not data.endswith(b"\r\n"):
                        data += b"\r\n"
                    s.send(data + b".\r\n")
                    code, text = s.getreply()
        except (OSError, smtplib.SMTPException) as e:
            if stage == "eod":
                # the end of data may have been sent: no way to know
                with self.lock:
                    m.uncertain = "%s: %r" % (stage, e)
            else:
                self._defer(m, "%s error %r" % (stage, e))
            return False
        text = text.decode("utf-8", "replace") if isinstance(text, bytes) else text
        what = "%s %d %s" % (stage, code, text.replace("\n", " / "))
        if stage == "eod" and code == 250:
            with self.lock:
                m.accepted = True
                m.qid = agpostfix.queued_id(text)
            return True
        if 400 <= code < 500 or code == 354:
            self._defer(m, what)
        else:
            with self.lock:
                m.rejected = what
                self.replies[" ".join(what.split()[:2])] += 1
        return False

    # -- figures --
    def summary(self):
        with self.lock:
            ms = list(self.msgs.values())
        return {
            "messages": len(ms),
            "attempts": sum(m.attempts for m in ms),
            "accepted": sum(1 for m in ms if m.accepted),
            "deferred_msgs": sum(1 for m in ms if m.deferrals),
            "deferrals": sum(len(m.deferrals) for m in ms),
            "rejected": sum(1 for m in ms if m.rejected is not None),
            "uncertain": sum(1 for m in ms if m.uncertain is not None),
            "unsent": sum(1 for m in ms if not self._done(m)),
            "errors": len(self.errors),
        }


def queue_files(pf):
    """Files in Postfix's queues (incoming, active, deferred, hold, maildrop)."""
    n = 0
    for q in ("incoming", "active", "deferred", "hold", "maildrop"):
        for _, _, files in os.walk(os.path.join(pf.queue, q)):
            n += len(files)
    return n


def flush_queue(pf, timeout=60.0):
    """postqueue -f until Postfix's queue is empty; True when it is."""
    deadline = time.monotonic() + timeout
    while True:
        if queue_files(pf) == 0:
            return True
        if time.monotonic() >= deadline:
            return False
        agtest.run([POSTQUEUE, "-c", pf.conf, "-f"], timeout=30)
        agtest.wait_until(lambda: queue_files(pf) == 0, 2.0, 0.1)


def sink_counts(sink):
    """token -> number of dumps at the sink holding it."""
    c = collections.Counter()
    for p in glob.glob(os.path.join(sink.spool, "*")):
        try:
            with open(p, "rb") as f:
                data = f.read().decode("utf-8", "replace")
        except OSError:
            continue
        for tok in TOKEN_RX.findall(data):
            c[tok] += 1
    return c


def wait_sink_stable(sink, expect, timeout=60.0):
    """Wait until the sink holds at least EXPECT tokens and the count has
    not changed for a second; returns the counts."""
    deadline = time.monotonic() + timeout
    last, since = None, time.monotonic()
    while True:
        c = sink_counts(sink)
        n = sum(c.values())
        now = time.monotonic()
        if n != last:
            last, since = n, now
        if (len(c) >= expect and now - since >= 1.0) or now >= deadline:
            return c
        time.sleep(0.2)


def account(load, counts):
    """The figures of a run: what the client saw against what the sink got.
    lost: accepted by Postfix (250) and never delivered; duplicates:
    delivered more than once; stray: at the sink though never accepted
    (a message a 4xx refused must not be delivered: the client sends it
    again)."""
    s = load.summary()
    with load.lock:
        ms = list(load.msgs.values())
    acc = {m.token for m in ms if m.accepted}
    s["delivered"] = sum(1 for t in counts if t in load.msgs)
    s["lost"] = sorted(t for t in acc if counts.get(t, 0) == 0)
    s["duplicates"] = sorted(t for t, n in counts.items() if n > 1)
    s["stray"] = sorted(t for t in counts if t not in acc)
    return s


def figures(s):
    """One line of the figures for TAP diagnostics and the README."""
    return ("messages=%d attempts=%d accepted=%d deferred_at_client=%d (%d refusals) "
            "rejected=%d uncertain=%d unsent=%d client_errors=%d delivered=%d duplicates=%d "
            "lost=%d stray=%d" %
            (s["messages"], s["attempts"], s["accepted"], s["deferred_msgs"], s["deferrals"],
             s["rejected"], s["uncertain"], s["unsent"], s["errors"], s["delivered"],
             len(s["duplicates"]), len(s["lost"]), len(s["stray"])))


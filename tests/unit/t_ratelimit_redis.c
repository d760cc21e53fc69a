/*
 * t_ratelimit_redis.c - unit tests for lib/ratelimit_redis.c against real
 * redis-server processes that this program starts on loopback (random
 * free ports in 10000-31999, a unix socket in a temporary directory) and
 * kills by PID at the end, and against a fake server in a thread that
 * gives hostile answers.  Cases: URL parsing and masking; bursts of
 * exactly LIMIT (limits that divide the window and limits that do not),
 * retry_ms, remaining and reset_ms; cost 0; decisions made without a
 * round trip; one round trip (EVALSHA) per decision; release; byte-sized costs; binary and longest keys;
 * foreach over several SCAN batches; reset; 200 threads on one key, each
 * on its own connection; a handle freed while its threads exit; TTLs;
 * SCRIPT FLUSH; a connection the server closed; unix sockets and
 * databases; AUTH; a stalled, a killed and a restarted server; replies
 * that do not add up.  Table-driven where it fits; every failure names
 * its case.
 *
 * Without /usr/bin/redis-server every case is skipped, unless CI=true,
 * where that is a failure.  Each server is started with
 * PR_SET_PDEATHSIG, so none outlives this program.
 */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "ratelimit_redis.h"

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))
#ifndef REDIS_SERVER
#define REDIS_SERVER "/usr/bin/redis-server"
#endif
#define SEC 1000ULL
#define HOUR (3600 * SEC)
#define DAY (24 * HOUR)
#define NEVER AG_RATE_NEVER
#define ERRLEN 256

/* Timing: the deadline of the outage cases, and how late an answer to a
 * deadline may be (sanitizers, a loaded machine). */
#define T_TIMEOUT_MS 300
#define T_SLACK_MS 700
#define T_FAST_MS 100		/* "at once": well under T_TIMEOUT_MS */
#define T_READY_MS 5000		/* for a server to answer PING */

/* ---- helpers ------------------------------------------------------------- */

/* Milliseconds on the monotonic clock. */
static uint64_t
mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Milliseconds since the epoch (Redis's TIME is on this clock). */
static uint64_t
wall_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Sleep MS milliseconds. */
static void
sleep_ms(uint64_t ms)
{
	struct timespec ts = { (time_t)(ms / 1000),
		(long)(ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
	}
}

/* Fail naming LABEL unless status GOT equals WANT; ERR is the detail. */
static void
check_status(const char *label, ag_status got, ag_status want,
    const char *err)
{
	if (got != want) {
		fail_msg("%s: status %s, want %s (%s)", label,
		    ag_status_str(got), ag_status_str(want), err);
	}
}

/* Fail naming LABEL and WHAT unless GOT equals WANT. */
static void
check_u64(const char *label, const char *what, uint64_t got, uint64_t want)
{
	if (got != want) {
		fail_msg("%s: %s is %llu, want %llu", label, what,
		    (unsigned long long)got, (unsigned long long)want);
	}
}

/* Fail naming LABEL and WHAT unless LO <= GOT <= HI. */
static void
check_range(const char *label, const char *what, uint64_t got, uint64_t lo,
    uint64_t hi)
{
	if (got < lo || got > hi) {
		fail_msg("%s: %s is %llu, want %llu..%llu", label, what,
		    (unsigned long long)got, (unsigned long long)lo,
		    (unsigned long long)hi);
	}
}

/* Fail naming LABEL unless TEXT contains WANT. */
static void
check_has(const char *label, const char *text, const char *want)
{
	if (strstr(text, want) == NULL) {
		fail_msg("%s: '%s' does not say '%s'", label, text, want);
	}
}

/* A handle on URL with TIMEOUT ms, or the case fails. */
static struct ag_redis *
handle(const char *url, unsigned timeout)
{
	struct ag_redis *h = NULL;
	char err[ERRLEN];

	check_status(url, ag_redis_new(url, timeout, &h, err, sizeof(err)),
	    AG_OK, err);
	return h;
}

/* Take COST of KEY under LIM, expecting AG_OK. */
static struct ag_rate_result
take(const char *label, struct ag_redis *h, const void *key, size_t keylen,
    const struct ag_rate_limit *lim, uint64_t cost)
{
	struct ag_rate_result r;
	char err[ERRLEN];

	check_status(label, ag_redis_take(h, key, keylen, lim, cost, &r, err,
	    sizeof(err)), AG_OK, err);
	return r;
}

/* ---- redis-server processes ---------------------------------------------- */

struct server {
	pid_t pid;		/* 0: not running */
	int port;		/* 0: choose one */
	const char *pass;	/* --requirepass, or NULL */
	bool unix_sock;		/* also listen on sock */
	char sock[108];
};

static char tmpdir[64];
static struct server srv_main = { .unix_sock = true };
static struct server *started[8];

/* A free TCP port on 127.0.0.1 in 10000-31999, never the same twice
 * (as tests/lib/agtest.py free_port chooses them). */
static int
free_port(void)
{
	static int given[64];
	static unsigned ngiven;
	struct sockaddr_in sa = { .sin_family = AF_INET };
	uint32_t rnd;
	unsigned i, k;
	int port, fd, ok;

	for (i = 0; i < 500; i++) {
		if (getrandom(&rnd, sizeof(rnd), 0) != sizeof(rnd)) {
			rnd = (uint32_t)rand();
		}
		port = 10000 + (int)(rnd % 22000);
		for (k = 0; k < ngiven && given[k] != port; k++) {
		}
		if (k < ngiven) {
			continue;
		}
		sa.sin_port = htons((uint16_t)port);
		sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		fd = socket(AF_INET, SOCK_STREAM, 0);
		ok = fd >= 0 &&
		    bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
		if (fd >= 0) {
			close(fd);
		}
		if (ok) {
			if (ngiven < NELEM(given)) {
				given[ngiven++] = port;
			}
			return port;
		}
	}
	return 0;
}

/* An admin connection to S (database DB), or NULL. */
static redisContext *
admin_connect(const struct server *s, int db)
{
	struct timeval tv = { 1, 0 };
	redisContext *c = redisConnectWithTimeout("127.0.0.1", s->port, tv);
	redisReply *rep = NULL;

	if (c == NULL || c->err != 0) {
		redisFree(c);
		return NULL;
	}
	(void)redisSetTimeout(c, tv);
	if (s->pass != NULL) {
		rep = redisCommand(c, "AUTH %s", s->pass);
		if (rep == NULL || rep->type == REDIS_REPLY_ERROR) {
			goto fail;
		}
		freeReplyObject(rep);
	}
	rep = redisCommand(c, "SELECT %d", db);
	if (rep == NULL || rep->type == REDIS_REPLY_ERROR) {
		goto fail;
	}
	freeReplyObject(rep);
	return c;
fail:
	if (rep != NULL) {
		freeReplyObject(rep);
	}
	redisFree(c);
	return NULL;
}

/* Start S (on S->port if set, else a free one) and wait for PING. */
static bool
server_start(struct server *s)
{
	char port[16];
	const char *argv[32];
	redisContext *c;
	redisReply *rep;
	uint64_t until;
	int n = 0, st, fd, tries;
	bool fixed = s->port != 0;
	pid_t parent = getpid();

	for (tries = 0; tries < (fixed ? 1 : 5); tries++) {
		if (!fixed && (s->port = free_port()) == 0) {
			return false;
		}
		snprintf(port, sizeof(port), "%d", s->port);
		n = 0;
		argv[n++] = "redis-server";
		argv[n++] = "--port", argv[n++] = port;
		argv[n++] = "--bind", argv[n++] = "127.0.0.1";
		argv[n++] = "--save", argv[n++] = "";
		argv[n++] = "--appendonly", argv[n++] = "no";
		argv[n++] = "--daemonize", argv[n++] = "no";
		argv[n++] = "--dir", argv[n++] = tmpdir;
		if (s->unix_sock) {
			snprintf(s->sock, sizeof(s->sock), "%s/redis-%d.sock",
			    tmpdir, s->port);
			argv[n++] = "--unixsocket", argv[n++] = s->sock;
			argv[n++] = "--unixsocketperm", argv[n++] = "700";
		}
		if (s->pass != NULL) {
			argv[n++] = "--requirepass", argv[n++] = s->pass;
		}
		argv[n] = NULL;
		if ((s->pid = fork()) < 0) {
			s->pid = 0;
			return false;
		}
		if (s->pid == 0) {
			(void)prctl(PR_SET_PDEATHSIG, SIGKILL);
			if (getppid() != parent) {
				_exit(1);
			}
			if ((fd = open("/dev/null", O_RDWR)) >= 0) {
				dup2(fd, 0), dup2(fd, 1), dup2(fd, 2);
			}
			execv(REDIS_SERVER, (char *const *)argv);
			_exit(127);
		}
		until = mono_ms() + T_READY_MS;
		while (mono_ms() < until) {
			if (waitpid(s->pid, &st, WNOHANG) == s->pid) {
				s->pid = 0;	/* port taken after all? */
				break;
			}
			if ((c = admin_connect(s, 0)) != NULL) {
				rep = redisCommand(c, "PING");
				st = rep != NULL &&
				    rep->type == REDIS_REPLY_STATUS &&
				    strcmp(rep->str, "PONG") == 0;
				if (rep != NULL) {
					freeReplyObject(rep);
				}
				redisFree(c);
				if (st) {
					return true;
				}
			}
			sleep_ms(20);
		}
		if (s->pid != 0) {
			kill(s->pid, SIGKILL);
			waitpid(s->pid, &st, 0);
			s->pid = 0;
		}
	}
	return false;
}

/* Kill S by its PID (a stopped one too) and reap it. */
static void
server_kill(struct server *s)
{
	int st;

	if (s->pid > 0) {
		kill(s->pid, SIGKILL);
		kill(s->pid, SIGCONT);
		waitpid(s->pid, &st, 0);
		s->pid = 0;
	}
}

/* Start S for a case, remembered so that cleanup kills it in any event. */
static void
server_up(struct server *s, const char *label)
{
	unsigned i;

	if (!server_start(s)) {
		fail_msg("%s: cannot start %s", label, REDIS_SERVER);
	}
	for (i = 0; i < NELEM(started); i++) {
		if (started[i] == NULL || started[i] == s) {
			started[i] = s;
			return;
		}
	}
}

/* Kill every server this program started; remove the directory. */
static void
cleanup(void)
{
	char path[160];
	unsigned i;

	for (i = 0; i < NELEM(started); i++) {
		if (started[i] != NULL) {
			server_kill(started[i]);
			if (started[i]->sock[0] != '\0') {
				unlink(started[i]->sock);
			}
		}
	}
	if (tmpdir[0] != '\0') {
		snprintf(path, sizeof(path), "%s/dump.rdb", tmpdir);
		unlink(path);
		rmdir(tmpdir);
	}
}

/* Run a command on S, database DB; the reply (the case fails without). */
static redisReply *
admin(const struct server *s, int db, const char *fmt, ...)
{
	redisContext *c = admin_connect(s, db);
	redisReply *rep;
	va_list ap;

	if (c == NULL) {
		fail_msg("admin: cannot connect to port %d", s->port);
	}
	va_start(ap, fmt);
	rep = redisvCommand(c, fmt, ap);
	va_end(ap);
	redisFree(c);
	if (rep == NULL) {
		fail_msg("admin: %s: no reply", fmt);
	}
	return rep;
}

/* The integer answer to KEYLEN bytes of KEY after CMD ("EXISTS", "PTTL")
 * on S, database DB. */
static long long
admin_key(const struct server *s, int db, const char *cmd, const void *key,
    size_t keylen)
{
	redisReply *rep = admin(s, db, "%s authgate:%b", cmd, key, keylen);
	long long v;

	if (rep->type != REDIS_REPLY_INTEGER) {
		freeReplyObject(rep);
		fail_msg("admin: %s: not an integer", cmd);
	}
	v = rep->integer;
	freeReplyObject(rep);
	return v;
}

/* Clients connected to S now (INFO clients). */
static long
clients(const struct server *s)
{
	redisReply *rep = admin(s, 0, "INFO clients");
	const char *p;
	long n = -1;

	if (rep->type == REDIS_REPLY_STRING &&
	    (p = strstr(rep->str, "connected_clients:")) != NULL) {
		n = strtol(p + strlen("connected_clients:"), NULL, 10);
	}
	freeReplyObject(rep);
	return n - 1;	/* not counting the admin connection */
}

/* The URL of S with SUFFIX ("/3", "") into BUF. */
static const char *
url_of(char *buf, size_t size, const struct server *s, const char *suffix)
{
	snprintf(buf, size, "redis://127.0.0.1:%d%s", s->port, suffix);
	return buf;
}

/* ---- URLs ---------------------------------------------------------------- */

static void
test_url(void **state)
{
	static const struct {
		const char *url;
		ag_status want;
		const char *says;	/* the masked URL, or part of ERR */
	} cases[] = {
		{ "redis://127.0.0.1", AG_OK, "redis://127.0.0.1" },
		{ "redis://localhost:6380/2", AG_OK,
		    "redis://localhost:6380/2" },
		{ "REDIS://cache.example", AG_OK, "REDIS://cache.example" },
		{ "redis://:hunter2@10.0.0.1:6379/0", AG_OK,
		    "redis://:***@10.0.0.1:6379/0" },
		{ "redis://:p%40ss%3Aw%2Frd@h", AG_OK, "redis://:***@h" },
		{ "redis://:a@b@h", AG_OK, "redis://:***@h" },
		{ "redis://[::1]:7000/1", AG_OK, "redis://[::1]:7000/1" },
		{ "redis://h/999999999", AG_OK, "redis://h/999999999" },
		{ "unix:/run/redis.sock", AG_OK, "unix:/run/redis.sock" },
		{ "unix:///run/redis.sock?db=3", AG_OK,
		    "unix:///run/redis.sock?db=3" },
		{ "", AG_INVALID, "expected redis://" },
		{ "http://h", AG_INVALID, "expected redis://" },
		{ "rediss://h", AG_INVALID, "TLS" },
		{ "redis://", AG_INVALID, "no host" },
		{ "redis://:6379", AG_INVALID, "no host" },
		{ "redis://h:0", AG_INVALID, "port" },
		{ "redis://h:65536", AG_INVALID, "port" },
		{ "redis://h:", AG_INVALID, "port" },
		{ "redis://h:-1", AG_INVALID, "port" },
		{ "redis://h/x", AG_INVALID, "database" },
		{ "redis://h/1000000000", AG_INVALID, "database" },
		{ "redis://h/1/2", AG_INVALID, "unexpected text" },
		{ "redis://h?db=1", AG_INVALID, "no query" },
		{ "redis://h h", AG_INVALID, "unexpected text" },
		{ "redis://user:hunter2@h", AG_INVALID, "user name" },
		{ "redis://:@h", AG_INVALID, "empty password" },
		{ "redis://:hunter%zz2@h", AG_INVALID, "%-escape" },
		{ "redis://:hunter2%4@h", AG_INVALID, "%-escape" },
		{ "redis://:hunter2%00@h", AG_INVALID, "%-escape" },
		{ "redis://[::1", AG_INVALID, "IPv6" },
		{ "redis://[10.0.0.1]", AG_INVALID, "IPv6" },
		{ "unix:relative.sock", AG_INVALID, "absolute" },
		{ "unix://host/path", AG_INVALID, "unix://HOST/" },
		{ "unix:/", AG_INVALID, "no socket path" },
		/* the URL escaped in ERR, never raw (tests/fuzz) */
		{ "Pi\x01\n", AG_INVALID, "URL 'Pi\\x01\\x0a'" },
		{ "unix:/s?db=x", AG_INVALID, "database" },
		{ "unix:/s?db=1&x", AG_INVALID, "database" },
		{ "unix:/s?timeout=1", AG_INVALID, "only query" },
	};
	char err[ERRLEN], url[400], label[160];
	struct ag_redis *h;
	ag_status rc;
	size_t i;

	(void)state;
	for (i = 0; i < NELEM(cases); i++) {
		snprintf(label, sizeof(label), "URL '%s'", cases[i].url);
		h = NULL;
		rc = ag_redis_new(cases[i].url, 1000, &h, err, sizeof(err));
		check_status(label, rc, cases[i].want, err);
		if (rc == AG_OK) {
			if (strcmp(ag_redis_url(h), cases[i].says) != 0) {
				fail_msg("%s: shown as '%s', want '%s'", label,
				    ag_redis_url(h), cases[i].says);
			}
			ag_redis_free(h);
			continue;
		}
		if (h != NULL) {
			fail_msg("%s: a handle though refused", label);
		}
		check_has(label, err, "bad RateBackend URL '");
		check_has(label, err, cases[i].says);
		if (strstr(err, "hunter") != NULL) {
			fail_msg("%s: the password shows in '%s'", label, err);
		}
	}
	/* Limits of length. */
	memset(url, 0, sizeof(url));
	memcpy(url, "redis://", 8);
	memset(url + 8, 'a', 254);
	check_status("host of 254 bytes", ag_redis_new(url, 1000, &h, err,
	    sizeof(err)), AG_INVALID, err);
	check_has("host of 254 bytes", err, "too long");
	url[8 + 253] = '\0';
	check_status("host of 253 bytes", ag_redis_new(url, 1000, &h, err,
	    sizeof(err)), AG_OK, err);
	ag_redis_free(h);
	memset(url, 0, sizeof(url));
	memcpy(url, "unix:/", 6);
	memset(url + 6, 's', 107);
	check_status("socket path of 108 bytes", ag_redis_new(url, 1000, &h,
	    err, sizeof(err)), AG_INVALID, err);
	check_has("socket path of 108 bytes", err, "too long");
	url[5 + 107] = '\0';
	check_status("socket path of 107 bytes", ag_redis_new(url, 1000, &h,
	    err, sizeof(err)), AG_OK, err);
	ag_redis_free(h);
	check_status("timeout 0", ag_redis_new("redis://h", 0, &h, err,
	    sizeof(err)), AG_INVALID, err);
	check_status("no URL", ag_redis_new(NULL, 1000, &h, err, sizeof(err)),
	    AG_INVALID, err);
	check_status("no ERR buffer", ag_redis_new("redis://h:0", 1000, &h,
	    NULL, 0), AG_INVALID, "");
	ag_redis_free(NULL);
	if (strcmp(ag_redis_url(NULL), "") != 0) {
		fail_msg("ag_redis_url(NULL) is not empty");
	}
}

/* ---- decisions on the real server ---------------------------------------- */

/*
 * Bursts of exactly LIMIT, then a refusal with retry_ms of one emission
 * interval; remaining and reset_ms after each step.  Redis's clock runs
 * on between calls, so a value may be smaller than GCRA on a still clock
 * by the time that has passed (DRIFT ms).
 */
static void
test_burst(void **state)
{
	static const struct {
		const char *label;
		uint64_t limit, window, cost;
	} cases[] = {
		{ "5 per 10 s", 5, 10 * SEC, 1 },
		{ "3 per 10 s (3 does not divide the window)", 3, 10 * SEC, 1 },
		{ "57 per minute (neither)", 57, 60 * SEC, 1 },
		{ "7 per hour, 7 in one take", 7, HOUR, 7 },
		{ "1000 per day", 1000, DAY, 1 },
		{ "997 per 7 days", 997, 7 * DAY, 1 },
	};
	struct ag_redis *h;
	struct ag_rate_result r;
	char url[64], label[160], key[32];
	uint64_t t0, drift, n, want, interval;
	size_t i;

	(void)state;
	h = handle(url_of(url, sizeof(url), &srv_main, ""), 2000);
	for (i = 0; i < NELEM(cases); i++) {
		const struct ag_rate_limit lim = { cases[i].limit,
			cases[i].window };

		snprintf(key, sizeof(key), "burst-%zu", i);
		interval = (cases[i].window + cases[i].limit - 1) /
		    cases[i].limit;
		t0 = mono_ms();
		for (n = 0; n < cases[i].limit; n += cases[i].cost) {
			snprintf(label, sizeof(label), "%s, take %llu",
			    cases[i].label, (unsigned long long)(n + 1));
			r = take(label, h, key, strlen(key), &lim,
			    cases[i].cost);
			drift = mono_ms() - t0 + 1;
			if (!r.allowed) {
				fail_msg("%s: refused", label);
			}
			check_u64(label, "retry_ms", r.retry_ms, 0);
			check_u64(label, "remaining", r.remaining,
			    cases[i].limit - n - cases[i].cost);
			want = (n + cases[i].cost) * cases[i].window /
			    cases[i].limit;
			want += (n + cases[i].cost) * cases[i].window %
			    cases[i].limit != 0;
			check_range(label, "reset_ms", r.reset_ms,
			    want > drift ? want - drift : 0, want);
		}
		snprintf(label, sizeof(label), "%s, one more", cases[i].label);
		r = take(label, h, key, strlen(key), &lim, 1);
		drift = mono_ms() - t0 + 1;
		if (r.allowed) {
			fail_msg("%s: allowed past the burst", label);
		}
		check_range(label, "retry_ms", r.retry_ms, interval - drift,
		    interval);
		check_u64(label, "remaining", r.remaining, 0);
		check_range(label, "reset_ms", r.reset_ms,
		    cases[i].window - drift, cases[i].window);
	}
	ag_redis_free(h);
}

/* Cost 0 asks: no key is made, nothing is taken. */
static void
test_ask(void **state)
{
	const struct ag_rate_limit lim = { 10, 10 * SEC };
	struct ag_redis *h;
	struct ag_rate_result r;
	char url[64];

	(void)state;
	h = handle(url_of(url, sizeof(url), &srv_main, ""), 2000);
	r = take("ask a fresh key", h, "ask", 3, &lim, 0);
	if (!r.allowed || r.retry_ms != 0 || r.remaining != 10 ||
	    r.reset_ms != 0) {
		fail_msg("ask a fresh key: allowed %d retry %llu remaining "
		    "%llu reset %llu", r.allowed,
		    (unsigned long long)r.retry_ms,
		    (unsigned long long)r.remaining,
		    (unsigned long long)r.reset_ms);
	}
	check_u64("ask a fresh key", "EXISTS",
	    (uint64_t)admin_key(&srv_main, 0, "EXISTS", "ask", 3), 0);
	r = take("take 4", h, "ask", 3, &lim, 4);
	check_u64("take 4", "remaining", r.remaining, 6);
	r = take("ask after 4", h, "ask", 3, &lim, 0);
	check_u64("ask after 4", "remaining", r.remaining, 6);
	check_range("ask after 4", "reset_ms", r.reset_ms, 3900, 4000);
	r = take("ask again", h, "ask", 3, &lim, 0);
	check_u64("ask again", "remaining", r.remaining, 6);
	r = take("take the rest", h, "ask", 3, &lim, 6);
	r = take("ask when empty", h, "ask", 3, &lim, 0);
	if (!r.allowed || r.remaining != 0) {
		fail_msg("ask when empty: allowed %d remaining %llu",
		    r.allowed, (unsigned long long)r.remaining);
	}
	ag_redis_free(h);
}

/*
 * Decided without a round trip: the handle points at a port where
 * nothing listens, and after all these the first real call is the
 * first connect (its error is not "retrying").
 */
static void
test_no_round_trip(void **state)
{
	static const struct {
		const char *label;
		struct ag_rate_limit lim;
		uint64_t cost;
		bool allowed;
	} cases[] = {
		{ "cost over the limit", { 10, SEC }, 11, false },
		{ "cost 2^64-1", { 10, SEC }, UINT64_MAX, false },
		{ "limit 0", { 0, SEC }, 1, false },
		{ "limit 0, cost 0", { 0, SEC }, 0, true },
	};
	const struct ag_rate_limit bad[] = { { 10, 0 },
		{ 10, AG_RATE_WINDOW_MAX_MS + 1 } };
	const struct ag_rate_limit ok = { 10, SEC };
	struct ag_rate_result r;
	unsigned char big[AG_RATE_KEY_MAX + 1] = { 0 };
	char url[64], err[ERRLEN];
	struct ag_redis *h;
	uint64_t t0;
	size_t i;

	(void)state;
	snprintf(url, sizeof(url), "redis://127.0.0.1:%d", free_port());
	h = handle(url, 2000);
	t0 = mono_ms();
	for (i = 0; i < NELEM(cases); i++) {
		check_status(cases[i].label, ag_redis_take(h, "k", 1,
		    &cases[i].lim, cases[i].cost, &r, err, sizeof(err)), AG_OK,
		    err);
		if (r.allowed != cases[i].allowed ||
		    r.retry_ms != (cases[i].allowed ? 0 : NEVER) ||
		    r.remaining != 0 || r.reset_ms != 0) {
			fail_msg("%s: allowed %d retry %llu", cases[i].label,
			    r.allowed, (unsigned long long)r.retry_ms);
		}
	}
	for (i = 0; i < NELEM(bad); i++) {
		check_status("bad window", ag_redis_take(h, "k", 1, &bad[i], 1,
		    &r, err, sizeof(err)), AG_INVALID, err);
		check_status("bad window (release)", ag_redis_release(h, "k",
		    1, &bad[i], 1, err, sizeof(err)), AG_INVALID, err);
	}
	check_status("no limit", ag_redis_take(h, "k", 1, NULL, 1, &r, err,
	    sizeof(err)), AG_INVALID, err);
	check_status("no result", ag_redis_take(h, "k", 1, &ok, 1, NULL, err,
	    sizeof(err)), AG_INVALID, err);
	check_status("key over the maximum", ag_redis_take(h, big,
	    sizeof(big), &ok, 1, &r, err, sizeof(err)), AG_INVALID, err);
	check_has("key over the maximum", err, "513 bytes");
	check_status("key over the maximum (release)", ag_redis_release(h,
	    big, sizeof(big), &ok, 1, err, sizeof(err)), AG_INVALID, err);
	check_status("key over the maximum (reset)", ag_redis_reset(h, big,
	    sizeof(big), err, sizeof(err)), AG_INVALID, err);
	check_status("no handle", ag_redis_take(NULL, "k", 1, &ok, 1, &r, err,
	    sizeof(err)), AG_INVALID, err);
	check_status("no callback", ag_redis_foreach(h, NULL, NULL, err,
	    sizeof(err)), AG_INVALID, err);
	check_range("decided at once", "ms", mono_ms() - t0, 0, T_FAST_MS);
	check_status("first real call", ag_redis_take(h, "k", 1, &ok, 1, &r,
	    err, sizeof(err)), AG_TEMPFAIL, err);
	check_has("first real call", err, "connect");
	if (strstr(err, "retrying") != NULL || r.allowed) {
		fail_msg("first real call: '%s', allowed %d", err, r.allowed);
	}
	check_status("no ERR buffer", ag_redis_take(h, "k", 1, &ok, 1, &r,
	    NULL, 0), AG_TEMPFAIL, "");
	ag_redis_free(h);
}

/* Calls of each command in S's INFO commandstats. */
struct cmdstats {
	size_t n;
	char name[64][40];
	long long calls[64];
};

/* Read S's INFO commandstats into OUT. */
static void
cmdstats(const struct server *s, struct cmdstats *out)
{
	redisReply *rep = admin(s, 0, "INFO commandstats");
	const char *p, *colon;
	size_t len;

	memset(out, 0, sizeof(*out));
	if (rep->type != REDIS_REPLY_STRING) {
		freeReplyObject(rep);
		fail_msg("INFO commandstats: not a string");
	}
	for (p = rep->str; (p = strstr(p, "cmdstat_")) != NULL &&
	    out->n < NELEM(out->name); p = colon) {
		p += strlen("cmdstat_");
		colon = strstr(p, ":calls=");
		if (colon == NULL) {
			break;
		}
		len = (size_t)(colon - p);
		snprintf(out->name[out->n], sizeof(out->name[0]), "%.*s",
		    (int)len, p);
		out->calls[out->n++] = strtoll(colon + strlen(":calls="), NULL,
		    10);
	}
	freeReplyObject(rep);
}

/* Calls of CMD in ST (0 if it never ran). */
static long long
cmd_calls(const struct cmdstats *st, const char *cmd)
{
	for (size_t i = 0; i < st->n; i++) {
		if (strcmp(st->name[i], cmd) == 0) {
			return st->calls[i];
		}
	}
	return 0;
}

/*
 * One round trip per decision: after the connection is made, N takes
 * (allowed and refused) and M releases are exactly N + M EVALSHA calls.
 * Commands a script runs count in commandstats too: the script calls
 * TIME and GET once a run (so exactly N + M each: no GET of our own
 * beside it), SET or DEL at most once; nothing else runs but what the
 * admin connection that reads the statistics sends (SELECT, INFO).
 */
static void
test_round_trips(void **state)
{
	enum { N = 40, M = 7 };
	static const char *const once[] = { "evalsha", "time", "get" };
	const struct ag_rate_limit lim = { 15, HOUR };	/* some refused */
	struct cmdstats before, after;
	struct ag_redis *h;
	char url[64], err[ERRLEN], key[32];
	long long grew;
	size_t i;

	(void)state;
	h = handle(url_of(url, sizeof(url), &srv_main, ""), 2000);
	(void)take("warm up: connect and SCRIPT LOAD", h, "rt-0", 4, &lim, 1);
	cmdstats(&srv_main, &before);
	for (i = 0; i < N; i++) {
		snprintf(key, sizeof(key), "rt-%zu", i % 2);
		(void)take("round trips", h, key, strlen(key), &lim, 1);
	}
	for (i = 0; i < M; i++) {
		check_status("release", ag_redis_release(h, "rt-1", 4, &lim, 1,
		    err, sizeof(err)), AG_OK, err);
	}
	cmdstats(&srv_main, &after);
	for (i = 0; i < NELEM(once); i++) {
		check_u64("round trips", once[i],
		    (uint64_t)(cmd_calls(&after, once[i]) -
		    cmd_calls(&before, once[i])), N + M);
	}
	for (i = 0; i < after.n; i++) {
		grew = after.calls[i] - cmd_calls(&before, after.name[i]);
		if (grew == 0 || strcmp(after.name[i], "evalsha") == 0 ||
		    strcmp(after.name[i], "time") == 0 ||
		    strcmp(after.name[i], "get") == 0) {
			continue;
		}
		if ((strcmp(after.name[i], "set") == 0 ||
		    strcmp(after.name[i], "del") == 0) && grew <= N + M) {
			continue;	/* the script's */
		}
		if ((strcmp(after.name[i], "select") == 0 ||
		    strcmp(after.name[i], "info") == 0) && grew <= 2) {
			continue;	/* the admin connection's own */
		}
		fail_msg("round trips: %s ran %lld times besides EVALSHA",
		    after.name[i], grew);
	}
	ag_redis_free(h);
}

/* Release gives back; a missing key is AG_NOTFOUND. */
static void
test_release(void **state)
{
	const struct ag_rate_limit lim = { 2, 10 * SEC }, zero = { 0, SEC };
	struct ag_rate_result r;
	struct ag_redis *h;
	char url[64], err[ERRLEN];

	(void)state;
	h = handle(url_of(url, sizeof(url), &srv_main, ""), 2000);
	take("take 1", h, "rel", 3, &lim, 1);
	take("take 2", h, "rel", 3, &lim, 1);
	r = take("take 3", h, "rel", 3, &lim, 1);
	if (r.allowed) {
		fail_msg("take 3: allowed");
	}
	check_status("release 1", ag_redis_release(h, "rel", 3, &lim, 1, err,
	    sizeof(err)), AG_OK, err);
	r = take("take after release", h, "rel", 3, &lim, 1);
	if (!r.allowed || r.remaining != 0) {
		fail_msg("take after release: allowed %d remaining %llu",
		    r.allowed, (unsigned long long)r.remaining);
	}
	check_status("release 0", ag_redis_release(h, "rel", 3, &lim, 0, err,
	    sizeof(err)), AG_OK, err);
	check_status("release under limit 0", ag_redis_release(h, "rel", 3,
	    &zero, 5, err, sizeof(err)), AG_OK, err);
	r = take("nothing given back by those", h, "rel", 3, &lim, 0);
	check_u64("nothing given back by those", "remaining", r.remaining, 0);
	check_status("release 1 of 2", ag_redis_release(h, "rel", 3, &lim, 1,
	    err, sizeof(err)), AG_OK, err);
	r = take("ask after release 1 of 2", h, "rel", 3, &lim, 0);
	check_u64("ask after release 1 of 2", "remaining", r.remaining, 1);
	check_range("ask after release 1 of 2", "reset_ms", r.reset_ms, 4900,
	    5000);
	check_status("release more than taken", ag_redis_release(h, "rel", 3,
	    &lim, 2, err, sizeof(err)), AG_OK, err);
	check_u64("fresh again: the key is gone", "EXISTS",
	    (uint64_t)admin_key(&srv_main, 0, "EXISTS", "rel", 3), 0);
	check_status("release again", ag_redis_release(h, "rel", 3, &lim, 1,
	    err, sizeof(err)), AG_NOTFOUND, err);
	check_status("release of a key never taken", ag_redis_release(h,
	    "never", 5, &lim, 1, err, sizeof(err)), AG_NOTFOUND, err);
	check_status("release 2^64-1", ag_redis_release(h, "never", 5, &lim,
	    UINT64_MAX, err, sizeof(err)), AG_NOTFOUND, err);
	take("take for a huge release", h, "rel", 3, &lim, 2);
	check_status("release 2^64-1 of a key", ag_redis_release(h, "rel", 3,
	    &lim, UINT64_MAX, err, sizeof(err)), AG_OK, err);
	r = take("fresh after a huge release", h, "rel", 3, &lim, 0);
	check_u64("fresh after a huge release", "remaining", r.remaining, 2);
	ag_redis_free(h);
}

/* Costs in bytes: no overflow, and limits whose fraction is capped. */
static void
test_bytes(void **state)
{
	const struct ag_rate_limit mb = { 50000000, DAY };
	const struct ag_rate_limit odd = { (1ULL << 63) - 1, DAY };
	const struct ag_rate_limit most = { UINT64_MAX, AG_RATE_WINDOW_MAX_MS };
	struct ag_rate_result r;
	struct ag_redis *h;
	char url[64], label[64];
	uint64_t i, t0, drift;

	(void)state;
	h = handle(url_of(url, sizeof(url), &srv_main, ""), 2000);
	t0 = mono_ms();
	for (i = 1; i <= 5; i++) {
		snprintf(label, sizeof(label), "10 MB of 50 MB a day, %llu",
		    (unsigned long long)i);
		r = take(label, h, "mb", 2, &mb, 10000000);
		drift = mono_ms() - t0 + 1;
		if (!r.allowed) {
			fail_msg("%s: refused", label);
		}
		/* Redis's clock runs: about 0.58 bytes come back a ms */
		check_range(label, "remaining", r.remaining,
		    50000000 - i * 10000000, 50000000 - i * 10000000 + drift);
		check_range(label, "reset_ms", r.reset_ms,
		    i * 17280000 - drift, i * 17280000);
	}
	r = take("10 MB more", h, "mb", 2, &mb, 10000000);
	drift = mono_ms() - t0 + 1;
	if (r.allowed) {
		fail_msg("10 MB more: allowed");
	}
	check_range("10 MB more", "retry_ms", r.retry_ms, 17280000 - drift,
	    17280000);
	r = take("50 MB + 1", h, "mb", 2, &mb, 50000001);
	check_u64("50 MB + 1", "retry_ms", r.retry_ms, NEVER);

	r = take("2^62 of 2^63-1 a day", h, "odd", 3, &odd, 1ULL << 62);
	if (!r.allowed || r.remaining > (1ULL << 62) ||
	    r.remaining < (1ULL << 62) - (1ULL << 40)) {
		fail_msg("2^62 of 2^63-1 a day: allowed %d remaining %llu",
		    r.allowed, (unsigned long long)r.remaining);
	}
	check_range("2^62 of 2^63-1 a day", "reset_ms", r.reset_ms,
	    DAY / 2 - 1000, DAY / 2 + 1);
	r = take("then the whole limit", h, "odd", 3, &odd, odd.limit);
	if (r.allowed) {
		fail_msg("then the whole limit: allowed");
	}
	check_range("then the whole limit", "retry_ms", r.retry_ms,
	    DAY / 2 - 1000, DAY / 2 + 1);
	r = take("2^64-1 per 100 years", h, "most", 4, &most, UINT64_MAX);
	if (!r.allowed || r.remaining != 0) {
		fail_msg("2^64-1 per 100 years: allowed %d remaining %llu",
		    r.allowed, (unsigned long long)r.remaining);
	}
	check_range("2^64-1 per 100 years", "reset_ms", r.reset_ms,
	    AG_RATE_WINDOW_MAX_MS - 1000, AG_RATE_WINDOW_MAX_MS);
	r = take("half more per 100 years", h, "most", 4, &most,
	    UINT64_MAX / 2);
	if (r.allowed) {
		fail_msg("half more per 100 years: allowed");
	}
	check_range("half more per 100 years", "retry_ms", r.retry_ms,
	    AG_RATE_WINDOW_MAX_MS / 2 - 1000, AG_RATE_WINDOW_MAX_MS / 2 + 1);
	check_range("TTL of 100 years", "PTTL",
	    (uint64_t)admin_key(&srv_main, 0, "PTTL", "most", 4),
	    AG_RATE_WINDOW_MAX_MS - 1000, AG_RATE_WINDOW_MAX_MS + 1);
	ag_redis_free(h);
}

/* Keys of any bytes, up to AG_RATE_KEY_MAX; the empty key too. */
static void
test_keys(void **state)
{
	const struct ag_rate_limit lim = { 3, HOUR };
	unsigned char key[AG_RATE_KEY_MAX];
	struct ag_rate_result r;
	struct ag_redis *h;
	char url[64];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(key); i++) {
		key[i] = (unsigned char)(i * 7 + 1);	/* 0x00, 0xff too */
	}
	key[0] = '\0', key[1] = '*', key[2] = '\r', key[3] = '\n';
	h = handle(url_of(url, sizeof(url), &srv_main, ""), 2000);
	take("longest key", h, key, sizeof(key), &lim, 1);
	check_u64("longest key", "EXISTS",
	    (uint64_t)admin_key(&srv_main, 0, "EXISTS", key, sizeof(key)), 1);
	r = take("longest key again", h, key, sizeof(key), &lim, 1);
	check_u64("longest key again", "remaining", r.remaining, 1);
	r = take("a key one byte shorter", h, key, sizeof(key) - 1, &lim, 1);
	check_u64("a key one byte shorter", "remaining", r.remaining, 2);
	r = take("empty key", h, NULL, 0, &lim, 1);
	check_u64("empty key", "remaining", r.remaining, 2);
	check_u64("empty key", "EXISTS",
	    (uint64_t)admin_key(&srv_main, 0, "EXISTS", "", 0), 1);
	ag_redis_free(h);
}

/* ---- foreach and reset --------------------------------------------------- */

#define FE_KEYS 2500	/* several SCAN batches of about 1000 */
#define FE_DB 5

struct seen {
	unsigned char *hits;	/* FE_KEYS counters for "kN" */
	unsigned long calls, a, longkey, junk, prefixed;
	uint64_t a_tat, a_now, now_lo, now_hi, bad_now;
	unsigned long stop_after;	/* 0: never */
};

/* Count what foreach shows in the struct seen ARG. */
static int
seen_cb(void *arg, const void *key, size_t keylen, uint64_t tat_ns,
    uint64_t now_ms)
{
	struct seen *s = arg;
	char buf[16];
	unsigned long n;

	s->calls++;
	if (now_ms < s->now_lo || now_ms > s->now_hi) {
		s->bad_now++;
	}
	if (keylen >= 9 && memcmp(key, "authgate:", 9) == 0) {
		s->prefixed++;
	}
	if (keylen == 1 && memcmp(key, "a", 1) == 0) {
		s->a++, s->a_tat = tat_ns, s->a_now = now_ms;
	} else if (keylen == AG_RATE_KEY_MAX) {
		s->longkey++;
	} else if (keylen == 4 && memcmp(key, "junk", 4) == 0) {
		s->junk++;
	} else if (keylen > 1 && keylen < sizeof(buf) &&
	    *(const char *)key == 'k') {
		memcpy(buf, key, keylen);
		buf[keylen] = '\0';
		n = strtoul(buf + 1, NULL, 10);
		if (n < FE_KEYS && s->hits[n] < 255) {
			s->hits[n]++;
		}
	}
	return s->stop_after != 0 && s->calls >= s->stop_after;
}

/* foreach over several batches: prefix stripped, sane TAT and time,
 * keys of others and values not ours skipped; then reset. */
static void
test_foreach_reset(void **state)
{
	/* One unit is 6 minutes of debt, and a key's TTL is its debt: the
	 * keys outlive a slow (sanitizer) build's 2500 takes. */
	const struct ag_rate_limit lim = { 10, HOUR };
	unsigned char longkey[AG_RATE_KEY_MAX];
	struct seen s = { 0 };
	struct ag_rate_result r;
	struct ag_redis *h;
	char url[64], key[16], err[ERRLEN];
	redisReply *rep;
	unsigned long i, missing = 0;

	(void)state;
	s.hits = calloc(FE_KEYS, 1);
	assert_non_null(s.hits);
	memset(longkey, 0xee, sizeof(longkey));
	freeReplyObject(admin(&srv_main, FE_DB, "FLUSHDB"));
	freeReplyObject(admin(&srv_main, FE_DB, "SET other:x 1"));
	freeReplyObject(admin(&srv_main, FE_DB, "SET authgate:junk hello"));
	h = handle(url_of(url, sizeof(url), &srv_main, "/5"), 2000);
	take("key a", h, "a", 1, &lim, 1);
	take("long key", h, longkey, sizeof(longkey), &lim, 1);
	for (i = 0; i < FE_KEYS; i++) {
		snprintf(key, sizeof(key), "k%lu", i);
		take("many keys", h, key, strlen(key), &lim, 1);
	}
	s.now_lo = wall_ms() - 5000, s.now_hi = wall_ms() + 5000;
	check_status("foreach", ag_redis_foreach(h, seen_cb, &s, err,
	    sizeof(err)), AG_OK, err);
	for (i = 0; i < FE_KEYS; i++) {
		missing += s.hits[i] == 0;
	}
	check_u64("foreach", "kN keys missed", missing, 0);
	check_u64("foreach", "key a seen", s.a, 1);
	check_u64("foreach", "long key seen", s.longkey, 1);
	check_u64("foreach", "junk value seen", s.junk, 0);
	check_u64("foreach", "keys with the prefix left on", s.prefixed, 0);
	check_u64("foreach", "calls with a wrong time", s.bad_now, 0);
	/* SCAN may return a key twice, never one of another prefix. */
	check_range("foreach", "calls", s.calls, FE_KEYS + 2, 2 * FE_KEYS);
	check_range("foreach", "key a: TAT - now (ms)",
	    s.a_tat / 1000000 - s.a_now, HOUR / 10 - 60 * SEC, HOUR / 10);
	if (s.a_tat / 1000000 + 1 < s.a_now) {
		fail_msg("foreach: key a has a TAT in the past");
	}
	free(s.hits);
	memset(&s, 0, sizeof(s));
	s.hits = calloc(FE_KEYS, 1);
	assert_non_null(s.hits);
	s.now_hi = UINT64_MAX, s.stop_after = 3;
	check_status("foreach, stop", ag_redis_foreach(h, seen_cb, &s, err,
	    sizeof(err)), AG_OK, err);
	check_u64("foreach, stop", "calls", s.calls, 3);
	free(s.hits);

	check_status("a value not ours", ag_redis_take(h, "junk", 4, &lim, 1,
	    &r, err, sizeof(err)), AG_TEMPFAIL, err);
	check_has("a value not ours", err, "bad value");
	r = take("then another key", h, "a", 1, &lim, 1);
	check_u64("then another key", "remaining", r.remaining, 8);

	check_status("reset", ag_redis_reset(h, "a", 1, err, sizeof(err)),
	    AG_OK, err);
	check_status("reset again", ag_redis_reset(h, "a", 1, err,
	    sizeof(err)), AG_NOTFOUND, err);
	r = take("fresh after reset", h, "a", 1, &lim, 1);
	check_u64("fresh after reset", "remaining", r.remaining, 9);
	check_status("reset the empty key", ag_redis_reset(h, NULL, 0, err,
	    sizeof(err)), AG_NOTFOUND, err);
	rep = admin(&srv_main, 0, "EXISTS authgate:a");
	check_u64("db 0 untouched", "EXISTS", (uint64_t)rep->integer, 0);
	freeReplyObject(rep);
	ag_redis_free(h);
}

/* ---- threads ------------------------------------------------------------- */

#define POOL_THREADS 200
#define POOL_TAKES 3
#define POOL_LIMIT 57

struct pool {
	struct ag_redis *h;
	pthread_barrier_t go, held, done;
	atomic_ulong allowed, errors;
	char err[ERRLEN];
	pthread_mutex_t mu;
};

/* POOL_TAKES takes on one key; wait while the main thread looks. */
static void *
pool_worker(void *arg)
{
	const struct ag_rate_limit lim = { POOL_LIMIT, HOUR };
	struct pool *p = arg;
	struct ag_rate_result r;
	char err[ERRLEN];
	int i;

	pthread_barrier_wait(&p->go);
	for (i = 0; i < POOL_TAKES; i++) {
		if (ag_redis_take(p->h, "pool", 4, &lim, 1, &r, err,
		    sizeof(err)) != AG_OK) {
			atomic_fetch_add(&p->errors, 1);
			pthread_mutex_lock(&p->mu);
			snprintf(p->err, sizeof(p->err), "%s", err);
			pthread_mutex_unlock(&p->mu);
		} else if (r.allowed) {
			atomic_fetch_add(&p->allowed, 1);
		}
	}
	pthread_barrier_wait(&p->held);
	pthread_barrier_wait(&p->done);
	return NULL;
}

/* Wait up to 3 s for S to have WANT clients; how many it has. */
static long
clients_settle(const struct server *s, long want)
{
	uint64_t until = mono_ms() + 3000;
	long n;

	while ((n = clients(s)) != want && mono_ms() < until) {
		sleep_ms(20);
	}
	return n;
}

/*
 * N threads on one key, each on its own connection; then either the
 * threads exit (their connections close with them) or, with FREE_FIRST,
 * the handle is freed while they are parked (it closes them all, and
 * their exit must not touch it).
 */
static void
pool_run(const char *label, unsigned n, bool free_first)
{
	struct pool *p = calloc(1, sizeof(*p));
	pthread_t *th = calloc(n, sizeof(*th));
	pthread_attr_t attr;
	char url[64];
	long base = clients(&srv_main), now;
	unsigned i;

	if (p == NULL || th == NULL) {
		fail_msg("%s: out of memory", label);
	}
	freeReplyObject(admin(&srv_main, 0, "DEL authgate:pool"));
	p->h = handle(url_of(url, sizeof(url), &srv_main, ""), 5000);
	pthread_mutex_init(&p->mu, NULL);
	pthread_barrier_init(&p->go, NULL, n);
	pthread_barrier_init(&p->held, NULL, n + 1);
	pthread_barrier_init(&p->done, NULL, n + 1);
	pthread_attr_init(&attr);
	pthread_attr_setstacksize(&attr, 256 * 1024);
	for (i = 0; i < n; i++) {
		if (pthread_create(&th[i], &attr, pool_worker, p) != 0) {
			fail_msg("%s: pthread_create %u failed", label, i);
		}
	}
	pthread_barrier_wait(&p->held);
	now = clients(&srv_main);
	if (free_first) {
		ag_redis_free(p->h);
		p->h = NULL;
	}
	pthread_barrier_wait(&p->done);
	for (i = 0; i < n; i++) {
		pthread_join(th[i], NULL);
	}
	if (atomic_load(&p->errors) != 0) {
		fail_msg("%s: %lu errors, the last: %s", label,
		    (unsigned long)atomic_load(&p->errors), p->err);
	}
	check_u64(label, "allowed", atomic_load(&p->allowed),
	    n * POOL_TAKES < POOL_LIMIT ? n * POOL_TAKES : POOL_LIMIT);
	check_u64(label, "connections while held", (uint64_t)(now - base), n);
	check_u64(label, "connections after", (uint64_t)clients_settle(
	    &srv_main, base), (uint64_t)base);
	ag_redis_free(p->h);
	pthread_attr_destroy(&attr);
	pthread_barrier_destroy(&p->go);
	pthread_barrier_destroy(&p->held);
	pthread_barrier_destroy(&p->done);
	pthread_mutex_destroy(&p->mu);
	free(th);
	free(p);
}

#define EXIT_ROUNDS 30
#define EXIT_THREADS 8

struct exiter {
	struct ag_redis *h, *h2;	/* H2: used after H is freed */
	atomic_uint done;
	atomic_ulong errors;
	pthread_barrier_t *freed;	/* NULL: exit at once */
};

/* One take, count it, then exit (or wait for H's end and use H2). */
static void *
exiter_main(void *arg)
{
	const struct ag_rate_limit lim = { 1000000, HOUR };
	struct exiter *x = arg;
	struct ag_rate_result r;
	char err[ERRLEN];

	if (ag_redis_take(x->h, "exit", 4, &lim, 1, &r, err,
	    sizeof(err)) != AG_OK) {
		atomic_fetch_add(&x->errors, 1);
	}
	atomic_fetch_add(&x->done, 1);
	if (x->freed != NULL) {
		pthread_barrier_wait(x->freed);
		if (ag_redis_take(x->h2, "exit", 4, &lim, 1, &r, err,
		    sizeof(err)) != AG_OK) {
			atomic_fetch_add(&x->errors, 1);
		}
	}
	return NULL;
}

/*
 * A handle freed while the threads that used it exit (as when the
 * configuration is reloaded while the milter lets idle workers go), and
 * threads that outlive a handle and go on with the next one.  Under
 * AddressSanitizer or ThreadSanitizer a race here shows.
 */
static void
test_threads_exit(void **state)
{
	pthread_t th[EXIT_THREADS];
	pthread_barrier_t freed;
	struct exiter x;
	char url[64];
	unsigned round, i;

	(void)state;
	url_of(url, sizeof(url), &srv_main, "");
	for (round = 0; round < EXIT_ROUNDS; round++) {
		memset(&x, 0, sizeof(x));
		x.h = handle(url, 2000);
		for (i = 0; i < EXIT_THREADS; i++) {
			if (pthread_create(&th[i], NULL, exiter_main,
			    &x) != 0) {
				fail_msg("pthread_create failed");
			}
		}
		while (atomic_load(&x.done) < EXIT_THREADS) {
			sched_yield();	/* spin: free as they exit */
		}
		ag_redis_free(x.h);
		for (i = 0; i < EXIT_THREADS; i++) {
			pthread_join(th[i], NULL);
		}
		check_u64("free while threads exit", "errors",
		    atomic_load(&x.errors), 0);
	}
	memset(&x, 0, sizeof(x));
	pthread_barrier_init(&freed, NULL, EXIT_THREADS + 1);
	x.h = handle(url, 2000);
	x.h2 = handle(url, 2000);
	x.freed = &freed;
	for (i = 0; i < EXIT_THREADS; i++) {
		if (pthread_create(&th[i], NULL, exiter_main, &x) != 0) {
			fail_msg("pthread_create failed");
		}
	}
	while (atomic_load(&x.done) < EXIT_THREADS) {
		sleep_ms(1);
	}
	ag_redis_free(x.h);
	pthread_barrier_wait(&freed);
	for (i = 0; i < EXIT_THREADS; i++) {
		pthread_join(th[i], NULL);
	}
	check_u64("threads that outlive a handle", "errors",
	    atomic_load(&x.errors), 0);
	ag_redis_free(x.h2);
	pthread_barrier_destroy(&freed);
	check_u64("threads that outlive a handle", "connections left",
	    (uint64_t)clients_settle(&srv_main, 0), 0);
}

static void
test_threads(void **state)
{
	(void)state;
	pool_run("200 threads, limit 57, handle freed first", POOL_THREADS,
	    true);
	pool_run("20 threads, limit 57, threads exit first", 20, false);
}

/* ---- the connection ------------------------------------------------------ */

/* Keys expire when fresh: PTTL is the debt + 1 ms. */
static void
test_ttl(void **state)
{
	const struct ag_rate_limit lim = { 10, 10 * SEC };
	struct ag_redis *h;
	char url[64];

	(void)state;
	h = handle(url_of(url, sizeof(url), &srv_main, ""), 2000);
	take("take 1", h, "ttl", 3, &lim, 1);
	check_range("take 1", "PTTL",
	    (uint64_t)admin_key(&srv_main, 0, "PTTL", "ttl", 3), 900, 1001);
	take("take 9", h, "ttl", 3, &lim, 9);
	check_range("take 9", "PTTL",
	    (uint64_t)admin_key(&srv_main, 0, "PTTL", "ttl", 3), 9900, 10001);
	ag_redis_free(h);
}

/* The server loses the script, or closes an idle connection: the next
 * call still succeeds. */
static void
test_recovery(void **state)
{
	const struct ag_rate_limit lim = { 10, 10 * SEC };
	struct ag_rate_result r;
	struct ag_redis *h;
	redisReply *rep;
	char url[64];

	(void)state;
	h = handle(url_of(url, sizeof(url), &srv_main, ""), 2000);
	take("before SCRIPT FLUSH", h, "flush", 5, &lim, 1);
	freeReplyObject(admin(&srv_main, 0, "SCRIPT FLUSH"));
	r = take("after SCRIPT FLUSH", h, "flush", 5, &lim, 1);
	check_u64("after SCRIPT FLUSH", "remaining", r.remaining, 8);
	r = take("after SCRIPT FLUSH, again", h, "flush", 5, &lim, 1);
	check_u64("after SCRIPT FLUSH, again", "remaining", r.remaining, 7);

	rep = admin(&srv_main, 0, "CLIENT KILL TYPE normal");
	if (rep->type != REDIS_REPLY_INTEGER || rep->integer < 1) {
		fail_msg("CLIENT KILL: killed no one");
	}
	freeReplyObject(rep);
	sleep_ms(20);
	r = take("after the server closed the connection", h, "flush", 5,
	    &lim, 1);
	check_u64("after the server closed the connection", "remaining",
	    r.remaining, 6);
	ag_redis_free(h);
}

/* unix:/PATH, unix:///PATH, ?db=N and /N put keys where they belong. */
static void
test_unix_db(void **state)
{
	const struct ag_rate_limit lim = { 10, HOUR };
	struct ag_rate_result r;
	struct ag_redis *h;
	char url[200], err[ERRLEN];

	(void)state;
	snprintf(url, sizeof(url), "unix:%s?db=3", srv_main.sock);
	h = handle(url, 2000);
	take("unix socket, db 3", h, "unixkey", 7, &lim, 1);
	ag_redis_free(h);
	check_u64("unix socket, db 3", "EXISTS in db 3",
	    (uint64_t)admin_key(&srv_main, 3, "EXISTS", "unixkey", 7), 1);
	check_u64("unix socket, db 3", "EXISTS in db 0",
	    (uint64_t)admin_key(&srv_main, 0, "EXISTS", "unixkey", 7), 0);
	snprintf(url, sizeof(url), "unix://%s", srv_main.sock);
	h = handle(url, 2000);
	r = take("unix:///PATH, db 0", h, "unixkey", 7, &lim, 1);
	check_u64("unix:///PATH, db 0", "remaining", r.remaining, 9);
	ag_redis_free(h);
	h = handle(url_of(url, sizeof(url), &srv_main, "/4"), 2000);
	take("TCP, db 4", h, "tcpkey", 6, &lim, 1);
	ag_redis_free(h);
	check_u64("TCP, db 4", "EXISTS in db 4",
	    (uint64_t)admin_key(&srv_main, 4, "EXISTS", "tcpkey", 6), 1);
	check_u64("TCP, db 4", "EXISTS in db 0",
	    (uint64_t)admin_key(&srv_main, 0, "EXISTS", "tcpkey", 6), 0);
	h = handle(url_of(url, sizeof(url), &srv_main, "/999"), 2000);
	check_status("db 999", ag_redis_take(h, "k", 1, &lim, 1, &r, err,
	    sizeof(err)), AG_TEMPFAIL, err);
	check_has("db 999", err, "SELECT");
	check_has("db 999", err, "out of range");
	ag_redis_free(h);
	snprintf(url, sizeof(url), "unix:%s.missing", srv_main.sock);
	h = handle(url, 2000);
	check_status("no such socket", ag_redis_take(h, "k", 1, &lim, 1, &r,
	    err, sizeof(err)), AG_TEMPFAIL, err);
	check_has("no such socket", err, "No such file");
	ag_redis_free(h);
}

/* A server with a password: the right one, a wrong one, none. */
static void
test_auth(void **state)
{
	const struct ag_rate_limit lim = { 10, HOUR };
	struct server s = { .pass = "p@ss:w/rd" };
	struct ag_rate_result r;
	struct ag_redis *h;
	char url[200], err[ERRLEN];

	(void)state;
	server_up(&s, "AUTH");
	snprintf(url, sizeof(url), "redis://:p%%40ss:w%%2Frd@127.0.0.1:%d/2",
	    s.port);
	h = handle(url, 2000);
	r = take("right password", h, "k", 1, &lim, 1);
	check_u64("right password", "remaining", r.remaining, 9);
	ag_redis_free(h);
	check_u64("right password", "EXISTS in db 2",
	    (uint64_t)admin_key(&s, 2, "EXISTS", "k", 1), 1);

	snprintf(url, sizeof(url), "redis://:wrong-one@127.0.0.1:%d", s.port);
	h = handle(url, 2000);
	check_status("wrong password", ag_redis_take(h, "k", 1, &lim, 1, &r,
	    err, sizeof(err)), AG_TEMPFAIL, err);
	check_has("wrong password", err, "AUTH");
	check_has("wrong password", err, "WRONGPASS");
	if (strstr(err, "wrong-one") != NULL) {
		fail_msg("wrong password: shows in '%s'", err);
	}
	check_status("wrong password, at once", ag_redis_take(h, "k", 1, &lim,
	    1, &r, err, sizeof(err)), AG_TEMPFAIL, err);
	check_has("wrong password, at once", err, "retrying in");
	check_has("wrong password, at once", err, "WRONGPASS");
	ag_redis_free(h);

	h = handle(url_of(url, sizeof(url), &s, ""), 2000);
	check_status("no password", ag_redis_take(h, "k", 1, &lim, 1, &r, err,
	    sizeof(err)), AG_TEMPFAIL, err);
	check_has("no password", err, "NOAUTH");
	ag_redis_free(h);
	server_kill(&s);
}

/* A take on H in another thread: its status and how long it took. */
struct side {
	struct ag_redis *h;
	ag_status rc;
	uint64_t ms;
	char err[ERRLEN];
};

/* Run one take for the struct side ARG. */
static void *
side_take(void *arg)
{
	const struct ag_rate_limit lim = { 1000, HOUR };
	struct side *s = arg;
	struct ag_rate_result r;
	uint64_t t0 = mono_ms();

	s->rc = ag_redis_take(s->h, "side", 4, &lim, 1, &r, s->err,
	    sizeof(s->err));
	s->ms = mono_ms() - t0;
	return NULL;
}

/* A take in a new thread (so on a new connection). */
static struct side
take_elsewhere(struct ag_redis *h)
{
	struct side s = { .h = h };
	pthread_t t;

	if (pthread_create(&t, NULL, side_take, &s) != 0) {
		fail_msg("pthread_create failed");
	}
	pthread_join(t, NULL);
	return s;
}

/* A take expecting STATUS within LO..HI ms and an error that says SAYS;
 * returns when it ended. */
static uint64_t
timed_take(const char *label, struct ag_redis *h, ag_status want,
    uint64_t lo, uint64_t hi, const char *says)
{
	const struct ag_rate_limit lim = { 1000, HOUR };
	struct ag_rate_result r;
	char err[ERRLEN];
	uint64_t t0 = mono_ms(), t1;

	check_status(label, ag_redis_take(h, "outage", 6, &lim, 1, &r, err,
	    sizeof(err)), want, err);
	t1 = mono_ms();
	check_range(label, "ms taken", t1 - t0, lo, hi);
	if (says != NULL) {
		check_has(label, err, says);
	}
	return t1;
}

/*
 * A stalled server (SIGSTOP): one timeout, then fast failures for
 * AG_REDIS_RETRY_MS in every thread, then back.  A killed one: fast
 * failures.  Restarted on the same port: back after AG_REDIS_RETRY_MS.
 */
static void
test_outage(void **state)
{
	struct server s = { 0 };
	struct ag_redis *h, *h2;
	struct side sd;
	char url[64];
	uint64_t t, window_end;

	(void)state;
	server_up(&s, "outage");
	h = handle(url_of(url, sizeof(url), &s, ""), T_TIMEOUT_MS);
	h2 = handle(url, T_TIMEOUT_MS);
	timed_take("up", h, AG_OK, 0, T_TIMEOUT_MS, NULL);

	kill(s.pid, SIGSTOP);
	t = timed_take("stalled", h, AG_TEMPFAIL, T_TIMEOUT_MS - 50,
	    T_TIMEOUT_MS + T_SLACK_MS, "no answer within 300 ms");
	window_end = t + AG_REDIS_RETRY_MS;
	timed_take("stalled, again", h, AG_TEMPFAIL, 0, T_FAST_MS,
	    "redis unreachable (retrying in");
	sd = take_elsewhere(h);
	check_status("stalled, another thread", sd.rc, AG_TEMPFAIL, sd.err);
	check_range("stalled, another thread", "ms taken", sd.ms, 0,
	    T_FAST_MS);
	check_has("stalled, another thread", sd.err, "retrying in");
	timed_take("stalled, first connect", h2, AG_TEMPFAIL,
	    T_TIMEOUT_MS - 50, T_TIMEOUT_MS + T_SLACK_MS, "no answer");
	kill(s.pid, SIGCONT);
	t = mono_ms();
	if (t < window_end + 20) {
		sleep_ms(window_end + 20 - t);
	}
	timed_take("back", h, AG_OK, 0, T_TIMEOUT_MS, NULL);
	sd = take_elsewhere(h);
	check_status("back, another thread", sd.rc, AG_OK, sd.err);

	server_kill(&s);
	t = timed_take("killed", h, AG_TEMPFAIL, 0, T_FAST_MS, NULL);
	window_end = t + AG_REDIS_RETRY_MS;
	timed_take("killed, again", h, AG_TEMPFAIL, 0, T_FAST_MS,
	    "redis unreachable (retrying in");
	server_up(&s, "restart");
	if (mono_ms() + 100 < window_end) {
		timed_take("restarted, within the window", h, AG_TEMPFAIL, 0,
		    T_FAST_MS, "retrying in");
	}
	t = mono_ms();
	if (t < window_end + 20) {
		sleep_ms(window_end + 20 - t);
	}
	timed_take("restarted, after the window", h, AG_OK, 0, T_TIMEOUT_MS,
	    NULL);
	ag_redis_free(h);
	ag_redis_free(h2);
	server_kill(&s);
}

/* ---- hostile replies ----------------------------------------------------- */

/*
 * A fake server in a thread: it reads one command at a time and answers
 * it from the case in fake_case by the command's name (NULL: close the
 * connection).  One client at a time is enough here.
 */
struct fake_case {
	const char *label;
	const char *script, *eval, *scan, *mget, *time;
	int op;			/* FK_TAKE, FK_FOREACH */
	uint64_t cost;
	ag_status want;
	const char *says;	/* in ERR; or, for AG_OK, unused */
	struct ag_rate_result result;	/* for AG_OK takes */
};

enum { FK_TAKE = 1, FK_FOREACH };

#define SHA_OK "$40\r\n0123456789abcdef0123456789abcdef01234567\r\n"
#define NOW_US "1700000000000000"	/* the fake's clock, us */

static _Atomic(const struct fake_case *) fake_case;
static atomic_bool fake_stop;
static int fake_fd = -1;
static pthread_t fake_thread;

/* Length of the first complete RESP command in BUF (LEN bytes), 0 if
 * incomplete; its name (up to 15 bytes) into NAME. */
static size_t
resp_command(const char *buf, size_t len, char name[16])
{
	const char *p = buf, *end = buf + len, *nl;
	long n, i, bl;

	if (len < 1 || *p != '*' || (nl = memchr(p, '\n', len)) == NULL) {
		return 0;
	}
	n = strtol(p + 1, NULL, 10);
	p = nl + 1;
	for (i = 0; i < n; i++) {
		if (p >= end || *p != '$' ||
		    (nl = memchr(p, '\n', (size_t)(end - p))) == NULL) {
			return 0;
		}
		bl = strtol(p + 1, NULL, 10);
		p = nl + 1;
		if (end - p < bl + 2) {
			return 0;
		}
		if (i == 0) {
			snprintf(name, 16, "%.*s", (int)(bl < 15 ? bl : 15), p);
		}
		p += bl + 2;
	}
	return (size_t)(p - buf);
}

/* Serve one client on FD until it goes or the case says to close. */
static void
fake_serve(int fd)
{
	static char buf[65536];
	const struct fake_case *fc;
	const char *answer;
	char name[16];
	size_t have = 0, used;
	ssize_t n;

	for (;;) {
		while ((used = resp_command(buf, have, name)) == 0) {
			if (have == sizeof(buf) || (n = read(fd, buf + have,
			    sizeof(buf) - have)) <= 0) {
				return;
			}
			have += (size_t)n;
		}
		memmove(buf, buf + used, have - used);
		have -= used;
		fc = atomic_load(&fake_case);
		answer = strcasecmp(name, "SCRIPT") == 0 ? fc->script :
		    strcasecmp(name, "EVALSHA") == 0 ? fc->eval :
		    strcasecmp(name, "SCAN") == 0 ? fc->scan :
		    strcasecmp(name, "MGET") == 0 ? fc->mget :
		    strcasecmp(name, "TIME") == 0 ? fc->time : NULL;
		if (answer == NULL || write(fd, answer, strlen(answer)) !=
		    (ssize_t)strlen(answer)) {
			return;
		}
	}
}

/* The fake's accept loop. */
static void *
fake_main(void *arg)
{
	struct pollfd p = { .fd = fake_fd, .events = POLLIN };
	int c;

	(void)arg;
	while (!atomic_load(&fake_stop)) {
		if (poll(&p, 1, 50) <= 0) {
			continue;
		}
		if ((c = accept(fake_fd, NULL, NULL)) >= 0) {
			fake_serve(c);
			close(c);
		}
	}
	return NULL;
}

/* Listen on a free port; its number. */
static int
fake_start(void)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	int port = free_port(), one = 1;

	sa.sin_port = htons((uint16_t)port);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	fake_fd = socket(AF_INET, SOCK_STREAM, 0);
	if (fake_fd < 0 ||
	    setsockopt(fake_fd, SOL_SOCKET, SO_REUSEADDR, &one,
	    sizeof(one)) != 0 ||
	    bind(fake_fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
	    listen(fake_fd, 8) != 0 ||
	    pthread_create(&fake_thread, NULL, fake_main, NULL) != 0) {
		fail_msg("cannot start the fake server on port %d", port);
	}
	return port;
}

/* Count foreach calls in the unsigned long ARG. */
static int
count_cb(void *arg, const void *key, size_t keylen, uint64_t tat_ns,
    uint64_t now_ms)
{
	(void)key, (void)keylen, (void)tat_ns, (void)now_ms;
	++*(unsigned long *)arg;
	return 0;
}

#define TAKE_REPLY(a, tat, frac) \
	"*4\r\n:" #a "\r\n:" tat "\r\n:" #frac "\r\n:" NOW_US "\r\n"
#define TIME_OK "*2\r\n$10\r\n1700000000\r\n$6\r\n000000\r\n"

/* Replies that are wrong in type, size, range or arithmetic. */
static void
test_hostile(void **state)
{
	/* Limit 10 per 10 s: a unit is 1 s = 10^6 us, DEN 1. */
	static const struct fake_case cases[] = {
		{ "valid, allowed", SHA_OK,
		    TAKE_REPLY(1, "1700000001000000", 0), .op = FK_TAKE,
		    .cost = 1, .want = AG_OK, .result = { true, 0, 9, 1000 } },
		{ "valid, refused", SHA_OK,
		    TAKE_REPLY(0, "1700000009500000", 0), .op = FK_TAKE,
		    .cost = 2, .want = AG_OK,
		    .result = { false, 1500, 0, 9500 } },
		{ "SCRIPT LOAD says +OK", "+OK\r\n", .op = FK_TAKE,
		    .cost = 1, .want = AG_TEMPFAIL, .says = "SCRIPT LOAD" },
		{ "SHA1 not hex", "$40\r\n0123456789abcdef"
		    "0123456789abcdef0123456z\r\n", .op = FK_TAKE,
		    .cost = 1, .want = AG_TEMPFAIL, .says = "SCRIPT LOAD" },
		{ "closed at connect", NULL, .op = FK_TAKE, .cost = 1,
		    .want = AG_TEMPFAIL, .says = "redis 127.0.0.1:" },
		{ "closed before the answer", SHA_OK, NULL, .op = FK_TAKE,
		    .cost = 1, .want = AG_TEMPFAIL, .says = "closed" },
		{ "not RESP", SHA_OK, "hello\r\n", .op = FK_TAKE, .cost = 1,
		    .want = AG_TEMPFAIL, .says = "redis 127.0.0.1:" },
		{ "error text with control bytes", SHA_OK,
		    "-ERR boom\x01\x1b[31m\r\n", .op = FK_TAKE, .cost = 1,
		    .want = AG_TEMPFAIL, .says = "EVALSHA: ERR boom??[31m" },
		{ "NOSCRIPT twice", SHA_OK, "-NOSCRIPT gone\r\n",
		    .op = FK_TAKE, .cost = 1, .want = AG_TEMPFAIL,
		    .says = "NOSCRIPT" },
		{ "allowed past the window", SHA_OK,
		    TAKE_REPLY(1, "1700000010000001", 0), .op = FK_TAKE,
		    .cost = 1, .want = AG_TEMPFAIL, .says = "unexpected" },
		{ "refused though it fits", SHA_OK,
		    TAKE_REPLY(0, "1700000001000000", 0), .op = FK_TAKE,
		    .cost = 1, .want = AG_TEMPFAIL, .says = "unexpected" },
		{ "TAT before now", SHA_OK,
		    TAKE_REPLY(1, "1699999999999999", 0), .op = FK_TAKE,
		    .cost = 1, .want = AG_TEMPFAIL, .says = "unexpected" },
		{ "fraction not below DEN", SHA_OK,
		    TAKE_REPLY(1, "1700000001000000", 1), .op = FK_TAKE,
		    .cost = 1, .want = AG_TEMPFAIL, .says = "unexpected" },
		{ "allowed is 2", SHA_OK,
		    TAKE_REPLY(2, "1700000001000000", 0), .op = FK_TAKE,
		    .cost = 1, .want = AG_TEMPFAIL, .says = "unexpected" },
		{ "negative", SHA_OK, TAKE_REPLY(1, "-1", 0), .op = FK_TAKE,
		    .cost = 1, .want = AG_TEMPFAIL, .says = "unexpected" },
		{ "2^63 - 1", SHA_OK, TAKE_REPLY(1, "9223372036854775807", 0),
		    .op = FK_TAKE, .cost = 1, .want = AG_TEMPFAIL,
		    .says = "unexpected" },
		{ "three elements", SHA_OK, "*3\r\n:1\r\n:1\r\n:1\r\n",
		    .op = FK_TAKE, .cost = 1, .want = AG_TEMPFAIL,
		    .says = "unexpected" },
		{ "strings, not integers", SHA_OK,
		    "*4\r\n$1\r\n1\r\n$1\r\n1\r\n$1\r\n0\r\n$1\r\n1\r\n",
		    .op = FK_TAKE, .cost = 1, .want = AG_TEMPFAIL,
		    .says = "unexpected" },
		{ "nil", SHA_OK, "$-1\r\n", .op = FK_TAKE, .cost = 1,
		    .want = AG_TEMPFAIL, .says = "unexpected" },
		{ "SCAN cursor not a number", SHA_OK, .scan =
		    "*2\r\n$2\r\n-1\r\n*0\r\n", .op = FK_FOREACH,
		    .want = AG_TEMPFAIL, .says = "SCAN" },
		{ "SCAN keys not an array", SHA_OK, .scan =
		    "*2\r\n$1\r\n0\r\n:5\r\n", .op = FK_FOREACH,
		    .want = AG_TEMPFAIL, .says = "SCAN" },
		{ "MGET too short", SHA_OK, .scan =
		    "*2\r\n$1\r\n0\r\n*2\r\n$10\r\nauthgate:a\r\n"
		    "$10\r\nauthgate:b\r\n", .mget = "*1\r\n$-1\r\n",
		    .op = FK_FOREACH, .want = AG_TEMPFAIL, .says = "MGET" },
		{ "TIME not numbers", SHA_OK, .scan =
		    "*2\r\n$1\r\n0\r\n*1\r\n$10\r\nauthgate:a\r\n",
		    .mget = "*1\r\n$16\r\n" NOW_US "\r\n",
		    .time = "*2\r\n$1\r\nx\r\n$1\r\n0\r\n", .op = FK_FOREACH,
		    .want = AG_TEMPFAIL, .says = "TIME" },
		{ "keys not ours and values not ours skipped", SHA_OK, .scan =
		    "*2\r\n$1\r\n0\r\n*5\r\n$5\r\nother\r\n:7\r\n"
		    "$10\r\nauthgate:a\r\n$10\r\nauthgate:b\r\n"
		    "$10\r\nauthgate:c\r\n", .mget = "*3\r\n$5\r\nhello\r\n"
		    "$-1\r\n$20\r\n" NOW_US ":1:2\r\n", .time = TIME_OK,
		    .op = FK_FOREACH, .want = AG_OK },
	};
	const struct ag_rate_limit lim = { 10, 10 * SEC };
	struct ag_rate_result r;
	struct ag_redis *h;
	unsigned long calls;
	char url[64], err[ERRLEN];
	const struct fake_case *fc;
	ag_status rc;
	size_t i;
	int port;

	(void)state;
	port = fake_start();
	snprintf(url, sizeof(url), "redis://127.0.0.1:%d", port);
	for (i = 0; i < NELEM(cases); i++) {
		fc = &cases[i];
		atomic_store(&fake_case, fc);
		h = handle(url, T_TIMEOUT_MS);
		calls = 0;
		if (fc->op == FK_TAKE) {
			rc = ag_redis_take(h, "k", 1, &lim, fc->cost, &r, err,
			    sizeof(err));
		} else {
			rc = ag_redis_foreach(h, count_cb, &calls, err,
			    sizeof(err));
		}
		ag_redis_free(h);	/* closes: the fake serves the next */
		check_status(fc->label, rc, fc->want, err);
		if (rc != AG_OK) {
			check_has(fc->label, err, fc->says);
			if (fc->op == FK_TAKE &&
			    (r.allowed || r.retry_ms != 0)) {
				fail_msg("%s: a decision with an error",
				    fc->label);
			}
		} else if (fc->op == FK_TAKE) {
			if (r.allowed != fc->result.allowed) {
				fail_msg("%s: allowed %d", fc->label,
				    r.allowed);
			}
			check_u64(fc->label, "retry_ms", r.retry_ms,
			    fc->result.retry_ms);
			check_u64(fc->label, "remaining", r.remaining,
			    fc->result.remaining);
			check_u64(fc->label, "reset_ms", r.reset_ms,
			    fc->result.reset_ms);
		} else {
			check_u64(fc->label, "keys", calls, 1);
		}
	}
	atomic_store(&fake_stop, true);
	pthread_join(fake_thread, NULL);
	close(fake_fd);
}

/* ---- main ---------------------------------------------------------------- */

/* Start the shared server (TCP and a unix socket). */
static int
group_setup(void **state)
{
	(void)state;
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/t_ratelimit_redis.XXXXXX");
	if (mkdtemp(tmpdir) == NULL) {
		tmpdir[0] = '\0';
		return -1;
	}
	if (!server_start(&srv_main)) {
		return -1;
	}
	started[0] = &srv_main;
	return 0;
}

/* Stop every server. */
static int
group_teardown(void **state)
{
	(void)state;
	cleanup();
	return 0;
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_url),
		cmocka_unit_test(test_no_round_trip),
		cmocka_unit_test(test_hostile),
		cmocka_unit_test(test_burst),
		cmocka_unit_test(test_ask),
		cmocka_unit_test(test_round_trips),
		cmocka_unit_test(test_release),
		cmocka_unit_test(test_bytes),
		cmocka_unit_test(test_keys),
		cmocka_unit_test(test_foreach_reset),
		cmocka_unit_test(test_ttl),
		cmocka_unit_test(test_recovery),
		cmocka_unit_test(test_unix_db),
		cmocka_unit_test(test_auth),
		cmocka_unit_test(test_threads),
		cmocka_unit_test(test_threads_exit),
		cmocka_unit_test(test_outage),
	};
	const char *ci = getenv("CI");

	/* A write to a connection the server closed must not kill us. */
	signal(SIGPIPE, SIG_IGN);
	if (access(REDIS_SERVER, X_OK) != 0) {
		if (ci != NULL && strcmp(ci, "true") == 0) {
			printf("1..1\nnot ok 1 - %s is installed "
			    "(CI=true: a missing dependency is a failure)\n",
			    REDIS_SERVER);
			return 1;
		}
		printf("1..0 # SKIP %s is not installed (Debian package "
		    "redis-server)\n", REDIS_SERVER);
		return 0;
	}
	atexit(cleanup);
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}

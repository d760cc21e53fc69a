/*
 * ratelimit_redis.c - the rate backend in Redis (see ratelimit_redis.h).
 *
 * The arithmetic.  A key's value is its TAT in whole microseconds since
 * the epoch ("TAT"), or that plus a fraction of a microsecond
 * ("TAT:FRAC:DEN", FRAC / DEN us).  With W the window in us, L the limit
 * and G = gcd(W, L), COST units are COST * W / L us: Q whole us and a
 * remainder that is a whole number of 1 / DEN us for DEN = L / G.  So the
 * script adds and compares exact rationals and a fresh key admits a burst
 * of exactly LIMIT whether or not LIMIT divides the window (whole
 * microseconds rounded up would charge "3 per 10 s" 3333334 us a unit
 * and refuse the third).  Lua 5.1 numbers are doubles, exact below 2^53:
 * TATs are about 1.8e15, W at most 3.2e15, and DEN is held to 2^52 (for
 * such limits, above 2^52 units per window, R is rounded up: charged at
 * most 2^-52 us too much per decision, never too little).  A value
 * written under another DEN (the limit was changed) is rounded up to a
 * whole microsecond.  The decision fields are computed here from the
 * script's (allowed, TAT, FRAC, now) in 128-bit integers, as ag_gcra()
 * does.  Every key gets a TTL of its debt + 1 ms: it vanishes when fresh.
 *
 * Connections.  A hiredis context is not thread-safe, so each thread has
 * its own (struct rr_conn, made on first use).  One pthread key, made
 * once and never deleted, holds each thread's list of connections (one
 * per handle it used); its destructor closes them when the thread exits.
 * A key per handle would need pthread_key_delete() in ag_redis_free(),
 * and that does not wait for a destructor already running in an exiting
 * thread (the milter's worker pool lets idle threads go at any time).
 * Each handle also lists its connections (under rr_mu), so that
 * ag_redis_free() can close them all; it frees the caller's own and
 * leaves the others' small structs to their threads, which drop such an
 * orphan on their next call or at exit.
 *
 * Failures.  A context that saw any error is closed, and the next call
 * connects again.  A connect that fails, or a command that times out,
 * closes the door for AG_REDIS_RETRY_MS for every thread (retry_at), so
 * that an outage costs a message one fast error; then one thread tries
 * again while the others still fail fast.  An idle connection that the
 * server closed (its "timeout" setting, a restart) shows as readable
 * before we write, and is replaced at no cost to the call.  A hostname
 * is resolved by getaddrinfo() inside hiredis, which no timeout bounds.
 *
 * The script is loaded (SCRIPT LOAD) on every new connection and run with
 * EVALSHA; a server that lost it (SCRIPT FLUSH, a restart, a failover)
 * answers NOSCRIPT, and the call loads it again and retries once.
 *
 * Trust.  Every reply is checked for its type, its size and the range of
 * each number before use, and the decision is checked against the
 * arithmetic (an "allowed" debt over the window is an error); a server's
 * error text is cut short and reduced to printable ASCII before it goes
 * into ERR.  hiredis 0.14 itself has no cap on reply sizes.
 *
 * Ownership: the handle owns its strings (the URL, parsed by
 * redis_url.c) and closes every thread's connection; a thread frees its
 * own structs.  Thread safety: every call
 * may come from any thread; ag_redis_free() when no call on the handle is
 * in progress (threads that used it may be exiting).  Writing to a socket
 * the server closed raises SIGPIPE: the daemon ignores it (filter/main.c),
 * and so must any other program.
 */
#include <ctype.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#include <hiredis/hiredis.h>

#include "log.h"
#include "ratelimit_redis.h"
#include "redis_url.h"

#define RR_US 1000ULL			/* microseconds a millisecond */
#define RR_NUM_MAX (1ULL << 53)		/* Lua numbers are exact below */
#define RR_DEN_MAX (1ULL << 52)		/* so that FRAC + R < RR_NUM_MAX */
#define RR_GIVE_MAX (1ULL << 52)	/* us: more than any debt */
#define RR_SHA_LEN 40			/* SHA1 in hex */
#define RR_NUM_DIGITS 16		/* digits of a number below 2^53 */
#define RR_SCAN_COUNT "1000"
#define RR_BATCH_MAX 100000		/* keys in one SCAN reply */
#define RR_QUOTE_MAX 120		/* bytes of server text in ERR */
#define RR_WHY_MAX 160
#define RR_SHOWN_MAX 80			/* bytes of a bad URL in ERR */
#define RR_PREFIX_LEN (sizeof(AG_REDIS_PREFIX) - 1)

typedef unsigned __int128 u128;

_Static_assert(AG_RATE_WINDOW_MAX_MS * RR_US < RR_GIVE_MAX,
    "a window in us is a Lua number, and less than RR_GIVE_MAX");

/*
 * The script.  KEYS[1] the key; ARGV: "take" or "release", Q, R, DEN,
 * TAU (the window, us).  Take returns {allowed, TAT, FRAC, now}: the new
 * TAT if allowed, else the current one; never before now.  Release
 * returns nil when there is no key, else 1.  Numbers go back as Lua
 * numbers, which Redis turns into integers: all are whole and below 2^53.
 */
static const char rr_script[] =
    "local q, r = tonumber(ARGV[2]), tonumber(ARGV[3])\n"
    "local den, tau = tonumber(ARGV[4]), tonumber(ARGV[5])\n"
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000000 + tonumber(t[2])\n"
    "local v = redis.call('GET', KEYS[1])\n"
    "if not v and ARGV[1] == 'release' then return false end\n"
    "local tat, frac = now, 0\n"
    "if v then\n"
    "  local a, f, d = string.match(v, '^(%d+):(%d+):(%d+)$')\n"
    "  if not a then a, f, d = string.match(v, '^(%d+)$'), '0', ARGV[4] end\n"
    "  if not a or #a > 16 or #f > 16 or #d > 16 then\n"
    "    return redis.error_reply('authgate: bad value')\n"
    "  end\n"
    "  a, f, d = tonumber(a), tonumber(f), tonumber(d)\n"
    "  if d == 0 or f >= d then\n"
    "    return redis.error_reply('authgate: bad value')\n"
    "  end\n"
    "  if d ~= den and f > 0 then a, f = a + 1, 0 end\n"
    "  if a > now or (a == now and f > 0) then tat, frac = a, f end\n"
    "end\n"
    "local function put(nt, nf)\n"
    "  local s = string.format('%.0f', nt)\n"
    "  if nf > 0 then\n"
    "    s = s .. ':' .. string.format('%.0f', nf) .. ':' .. ARGV[4]\n"
    "  end\n"
    "  local ms = math.floor((nt - now + (nf > 0 and 1 or 0) + 999) / 1000)\n"
    "  redis.call('SET', KEYS[1], s, 'PX', string.format('%.0f', ms + 1))\n"
    "end\n"
    "if ARGV[1] == 'release' then\n"
    "  if (q > 0 or r > 0) and (tat > now or frac > 0) then\n"
    "    local nt, nf = tat - q, frac - r\n"
    "    if nf < 0 then nt, nf = nt - 1, nf + den end\n"
    "    if nt < now or (nt == now and nf == 0) then\n"
    "      redis.call('DEL', KEYS[1])\n"
    "    else\n"
    "      put(nt, nf)\n"
    "    end\n"
    "  end\n"
    "  return 1\n"
    "end\n"
    "local nt, nf = tat + q, frac + r\n"
    "if nf >= den then nt, nf = nt + 1, nf - den end\n"
    "if nt >= 9007199254740992 then\n"
    "  return redis.error_reply('authgate: time out of range')\n"
    "end\n"
    "if nt - now > tau or (nt - now == tau and nf > 0) then\n"
    "  return {0, tat, frac, now}\n"
    "end\n"
    "if q == 0 and r == 0 then return {1, tat, frac, now} end\n"
    "put(nt, nf)\n"
    "return {1, nt, nf, now}\n";

struct rr_conn {
	_Atomic(struct ag_redis *) r;	/* NULL: its handle is gone */
	redisContext *ctx;		/* NULL: connect on next use */
	char sha[RR_SHA_LEN + 1];	/* the script's, from SCRIPT LOAD */
	struct rr_conn *tnext;		/* the thread's list: only it walks */
	struct rr_conn *prev, *next;	/* on r->conns, under rr_mu */
};

struct ag_redis {
	char *shown;			/* the URL, password masked */
	struct ag_redis_url url;	/* where, AUTH and SELECT */
	unsigned timeout_ms;
	struct timeval tv;
	bool have_mu;
	pthread_mutex_t mu;		/* guards down_why */
	struct rr_conn *conns;		/* every thread's, under rr_mu */
	_Atomic uint64_t retry_at;	/* monotonic ms; no connects before */
	char down_why[RR_WHY_MAX];	/* why the door closed */
};

/* Each thread's list of connections (the head), and what guards every
 * handle's list and every connection's R going to NULL. */
static pthread_key_t rr_key;
static pthread_once_t rr_key_once = PTHREAD_ONCE_INIT;
static bool rr_key_ok;
static pthread_mutex_t rr_mu = PTHREAD_MUTEX_INITIALIZER;

/* The increment of one decision: Q + R / DEN us. */
struct rr_inc {
	uint64_t q, r, den;
	uint64_t w;			/* the window, us */
	uint64_t limit;
	uint64_t unit;			/* W / G: one unit in 1 / DEN us; 0 if
					 * DEN was capped */
};

/* ---- small things -------------------------------------------------------- */

/* Write a message to ERR (ERRLEN bytes, may be NULL or 0). */
static void __attribute__((format(printf, 3, 4)))
rr_err(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (err == NULL || errlen == 0) {
		return;
	}
	va_start(ap, fmt);
	(void)vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

/* LEN bytes of server text at S, printable and cut short, into BUF. */
static const char *
quote(char *buf, size_t size, const char *s, size_t len)
{
	size_t i, n = len < size - 1 ? len : size - 1;

	for (i = 0; i < n; i++) {
		buf[i] = s[i] >= 0x20 && s[i] < 0x7f ? s[i] : '?';
	}
	buf[n] = '\0';
	return buf;
}

/* Milliseconds on the monotonic clock. */
static uint64_t
mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Greatest common divisor of A and B (B > 0). */
static uint64_t
gcd64(uint64_t a, uint64_t b)
{
	uint64_t t;

	while (b != 0) {
		t = a % b;
		a = b;
		b = t;
	}
	return a;
}

/* N / D rounded up. */
static inline u128
div_up(u128 n, u128 d)
{
	return n / d + (n % d != 0);
}

/* The decimal number of LEN digits at S (at most MAXDIG) into *OUT. */
static bool
parse_num(const char *s, size_t len, size_t maxdig, uint64_t *out)
{
	uint64_t v = 0;
	size_t i;

	if (len == 0 || len > maxdig) {
		return false;
	}
	for (i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9') {
			return false;
		}
		v = v * 10 + (uint64_t)(s[i] - '0');
	}
	*out = v;
	return true;
}

/* ---- the handle ---------------------------------------------------------- */

/* Close C's context, if any: the next call connects again. */
static void
conn_close(struct rr_conn *c)
{
	if (c->ctx != NULL) {
		redisFree(c->ctx);
		c->ctx = NULL;
	}
}

/* Take C off its handle's list, if it still has a handle; rr_mu held. */
static void
conn_unlink(struct rr_conn *c)
{
	struct ag_redis *r = atomic_load(&c->r);

	if (r == NULL) {
		return;
	}
	if (c->prev != NULL) {
		c->prev->next = c->next;
	} else {
		r->conns = c->next;
	}
	if (c->next != NULL) {
		c->next->prev = c->prev;
	}
	atomic_store(&c->r, NULL);
}

/* A thread's exit: close and free every connection on its list ARG. */
static void
conn_destroy(void *arg)
{
	struct rr_conn *c = arg, *next;

	for (; c != NULL; c = next) {
		next = c->tnext;
		pthread_mutex_lock(&rr_mu);
		conn_unlink(c);
		pthread_mutex_unlock(&rr_mu);
		conn_close(c);	/* an orphan's is closed already */
		free(c);
	}
}

/* Make the one key (once per process). */
static void
key_make(void)
{
	rr_key_ok = pthread_key_create(&rr_key, conn_destroy) == 0;
}

ag_status
ag_redis_new(const char *url, unsigned timeout_ms, struct ag_redis **out,
    char *err, size_t errlen)
{
	char shown[512], esc[RR_SHOWN_MAX + 1];
	struct ag_redis *r;
	const char *why = NULL;
	ag_status rc;
	size_t n;

	rr_err(err, errlen, "%s", "");
	if (out == NULL) {
		return AG_INVALID;
	}
	*out = NULL;
	if (url == NULL || timeout_ms == 0) {
		rr_err(err, errlen, "%s", url == NULL ? "no RateBackend URL" :
		    "the Redis timeout must be more than 0 ms");
		return AG_INVALID;
	}
	if ((r = calloc(1, sizeof(*r))) == NULL) {
		rr_err(err, errlen, "out of memory");
		return AG_NOMEM;
	}
	ag_redis_url_mask(url, shown, sizeof(shown));
	if ((rc = ag_redis_url_parse(url, &r->url, &why)) == AG_INVALID) {
		/* Cut a long URL short: the reason must stay in ERR; escaped,
		 * as the URL may hold any byte */
		ag_log_escape(esc, sizeof(esc), shown);
		rr_err(err, errlen, "bad RateBackend URL '%s': %s", esc, why);
		ag_redis_free(r);
		return rc;
	}
	n = strlen(url) + sizeof(":***");
	if (rc == AG_OK && (r->shown = malloc(n)) == NULL) {
		rc = AG_NOMEM;
	}
	if (rc == AG_OK) {
		ag_redis_url_mask(url, r->shown, n);
		r->have_mu = pthread_mutex_init(&r->mu, NULL) == 0;
		rc = r->have_mu && pthread_once(&rr_key_once, key_make) == 0 &&
		    rr_key_ok ? AG_OK : AG_NOMEM;
	}
	if (rc != AG_OK) {
		rr_err(err, errlen, "out of memory");
		ag_redis_free(r);
		return rc;
	}
	r->timeout_ms = timeout_ms;
	r->tv.tv_sec = (time_t)(timeout_ms / 1000);
	r->tv.tv_usec = (suseconds_t)(timeout_ms % 1000) * 1000;
	atomic_init(&r->retry_at, 0);
	*out = r;
	return AG_OK;
}

void
ag_redis_free(struct ag_redis *r)
{
	struct rr_conn *c, *next, *head, **link;

	if (r == NULL) {
		return;
	}
	/* This thread's own connection goes at once. */
	head = rr_key_ok ? pthread_getspecific(rr_key) : NULL;
	for (link = &head; (c = *link) != NULL; link = &c->tnext) {
		if (atomic_load(&c->r) == r) {
			*link = c->tnext;
			pthread_mutex_lock(&rr_mu);
			conn_unlink(c);
			pthread_mutex_unlock(&rr_mu);
			conn_close(c);
			free(c);
			(void)pthread_setspecific(rr_key, head);
			break;
		}
	}
	/* Other threads' are closed and left to them as orphans: no call
	 * is in progress, and an exiting thread waits for rr_mu. */
	pthread_mutex_lock(&rr_mu);
	for (c = r->conns; c != NULL; c = next) {
		next = c->next;
		conn_close(c);
		atomic_store(&c->r, NULL);	/* the last touch of C here */
	}
	r->conns = NULL;
	pthread_mutex_unlock(&rr_mu);
	if (r->have_mu) {
		pthread_mutex_destroy(&r->mu);
	}
	free(r->shown);
	ag_redis_url_clear(&r->url);
	free(r);
}

const char *
ag_redis_url(const struct ag_redis *r)
{
	return r != NULL && r->shown != NULL ? r->shown : "";
}

/* ---- connections --------------------------------------------------------- */

/* Close the door for every thread for AG_REDIS_RETRY_MS, saying WHY. */
static void
mark_down(struct ag_redis *r, const char *why)
{
	pthread_mutex_lock(&r->mu);
	snprintf(r->down_why, sizeof(r->down_why), "%s: %s", r->url.where, why);
	pthread_mutex_unlock(&r->mu);
	atomic_store(&r->retry_at, mono_ms() + AG_REDIS_RETRY_MS);
}

/*
 * Send ARGC arguments on C and read the reply into *OUT (the caller frees
 * it; it may be an error reply).  On trouble C is closed and ERR says
 * why: AG_TEMPFAIL, or AG_NOMEM.  A timeout closes the door for all.
 */
static ag_status
conn_call(struct rr_conn *c, int argc, const char **argv,
    const size_t *argvlen, redisReply **out, char *err, size_t errlen)
{
	struct ag_redis *r = atomic_load(&c->r);
	char why[RR_WHY_MAX];
	redisReply *rep;
	int e;

	*out = NULL;
	errno = 0;
	rep = redisCommandArgv(c->ctx, argc, argv, argvlen);
	e = errno;
	if (rep != NULL) {
		*out = rep;
		return AG_OK;
	}
	if (c->ctx->err == REDIS_ERR_OOM) {
		rr_err(err, errlen, "redis %s: out of memory", r->url.where);
		conn_close(c);
		return AG_NOMEM;
	}
	if (c->ctx->err == REDIS_ERR_IO && (e == EAGAIN || e == EWOULDBLOCK)) {
		snprintf(why, sizeof(why), "no answer within %u ms",
		    r->timeout_ms);
		mark_down(r, why);
	} else {
		snprintf(why, sizeof(why), "%s", c->ctx->errstr);
	}
	rr_err(err, errlen, "redis %s: %s", r->url.where, why);
	conn_close(c);
	return AG_TEMPFAIL;
}

/* An error reply REP (freed here) on C: close C, say why in ERR. */
static ag_status
conn_replied_error(struct rr_conn *c, redisReply *rep, const char *what,
    char *err, size_t errlen)
{
	const char *where = atomic_load(&c->r)->url.where;
	char q[RR_QUOTE_MAX];

	if (rep->type == REDIS_REPLY_ERROR) {
		rr_err(err, errlen, "redis %s: %s: %s", where, what,
		    quote(q, sizeof(q), rep->str, rep->len));
	} else {
		rr_err(err, errlen, "redis %s: %s: unexpected reply (type %d)",
		    where, what, rep->type);
	}
	freeReplyObject(rep);
	conn_close(c);
	return AG_TEMPFAIL;
}

/* Run a command of ARGC plain strings that must answer +OK. */
static ag_status
conn_simple(struct rr_conn *c, int argc, const char **argv, const char *what,
    char *err, size_t errlen)
{
	size_t len[3];
	redisReply *rep;
	ag_status rc;
	int i;

	for (i = 0; i < argc && i < 3; i++) {
		len[i] = strlen(argv[i]);
	}
	if ((rc = conn_call(c, argc, argv, len, &rep, err, errlen)) != AG_OK) {
		return rc;
	}
	if (rep->type != REDIS_REPLY_STATUS || rep->len != 2 ||
	    memcmp(rep->str, "OK", 2) != 0) {
		return conn_replied_error(c, rep, what, err, errlen);
	}
	freeReplyObject(rep);
	return AG_OK;
}

/* Load the script on C and keep its SHA1. */
static ag_status
script_load(struct rr_conn *c, char *err, size_t errlen)
{
	const char *argv[] = { "SCRIPT", "LOAD", rr_script };
	size_t len[] = { 6, 4, sizeof(rr_script) - 1 };
	redisReply *rep;
	ag_status rc;
	size_t i;

	if ((rc = conn_call(c, 3, argv, len, &rep, err, errlen)) != AG_OK) {
		return rc;
	}
	if (rep->type != REDIS_REPLY_STRING || rep->len != RR_SHA_LEN) {
		return conn_replied_error(c, rep, "SCRIPT LOAD", err, errlen);
	}
	for (i = 0; i < RR_SHA_LEN; i++) {
		if (!isxdigit((unsigned char)rep->str[i])) {
			return conn_replied_error(c, rep, "SCRIPT LOAD", err,
			    errlen);
		}
	}
	memcpy(c->sha, rep->str, RR_SHA_LEN);
	c->sha[RR_SHA_LEN] = '\0';
	freeReplyObject(rep);
	return AG_OK;
}

/*
 * Connect C: connect, AUTH, SELECT, SCRIPT LOAD.  While the door is shut
 * this fails at once; when it opens again one thread (the one that moves
 * retry_at on) tries, and the others go on failing at once until it is
 * done, so that an outage costs one timeout a window, not one a thread.
 */
static ag_status
conn_open(struct rr_conn *c, char *err, size_t errlen)
{
	struct ag_redis *r = atomic_load(&c->r);
	uint64_t now = mono_ms(), at = atomic_load(&r->retry_at), mine = 0;
	const char *argv[2];
	char why[RR_WHY_MAX], db[16];
	ag_status rc = AG_OK;
	size_t n;

	if (at != 0) {
		mine = now + AG_REDIS_RETRY_MS;
		if (now < at ||
		    !atomic_compare_exchange_strong(&r->retry_at, &at, mine)) {
			pthread_mutex_lock(&r->mu);
			snprintf(why, sizeof(why), "%s", r->down_why);
			pthread_mutex_unlock(&r->mu);
			rr_err(err, errlen, "redis unreachable (retrying in "
			    "%llu ms): %s",
			    (unsigned long long)(at > now ? at - now : 0), why);
			return AG_TEMPFAIL;
		}
	}
	c->ctx = r->url.path != NULL ?
	    redisConnectUnixWithTimeout(r->url.path, r->tv) :
	    redisConnectWithTimeout(r->url.host, r->url.port, r->tv);
	if (c->ctx == NULL) {
		rr_err(err, errlen, "redis %s: out of memory", r->url.where);
		return AG_NOMEM;
	}
	if (c->ctx->err != 0 || redisSetTimeout(c->ctx, r->tv) != REDIS_OK) {
		rr_err(err, errlen, "redis %s: connect: %s", r->url.where,
		    c->ctx->err != 0 ? c->ctx->errstr : "cannot set timeout");
		rc = AG_TEMPFAIL;
	}
	if (rc == AG_OK && r->url.password != NULL) {
		argv[0] = "AUTH", argv[1] = r->url.password;
		rc = conn_simple(c, 2, argv, "AUTH", err, errlen);
	}
	if (rc == AG_OK && r->url.db != 0) {
		snprintf(db, sizeof(db), "%u", r->url.db);
		argv[0] = "SELECT", argv[1] = db;
		rc = conn_simple(c, 2, argv, "SELECT", err, errlen);
	}
	if (rc == AG_OK) {
		rc = script_load(c, err, errlen);
	}
	if (rc == AG_OK) {
		/* Open the door, unless someone shut it again meanwhile. */
		(void)atomic_compare_exchange_strong(&r->retry_at, &mine, 0);
	} else {
		conn_close(c);
		/* ERR is "redis WHERE: reason": keep the reason. */
		n = strlen("redis ") + strlen(r->url.where) + 2;
		if (rc == AG_TEMPFAIL) {
			mark_down(r, strlen(err) >= n ? err + n : err);
		}
	}
	return rc;
}

/* True if C's idle socket has nothing to read: a closed peer would. */
static bool
conn_quiet(const struct rr_conn *c)
{
	struct pollfd p = { .fd = c->ctx->fd, .events = POLLIN };

	return poll(&p, 1, 0) == 0;
}

/*
 * This thread's connection to R, connected, into *OUT.  On the way,
 * orphans (connections of freed handles, closed already) are freed.
 */
static ag_status
conn_get(struct ag_redis *r, struct rr_conn **out, char *err, size_t errlen)
{
	struct rr_conn *head = pthread_getspecific(rr_key), *c, **link;
	struct ag_redis *cr;
	bool changed = false;
	ag_status rc;

	*out = NULL;
	for (link = &head; (c = *link) != NULL;) {
		if ((cr = atomic_load(&c->r)) == r) {
			break;
		}
		if (cr == NULL) {
			*link = c->tnext;
			free(c);
			changed = true;
			continue;
		}
		link = &c->tnext;
	}
	if (c == NULL) {
		if ((c = calloc(1, sizeof(*c))) == NULL) {
			if (changed) {
				(void)pthread_setspecific(rr_key, head);
			}
			rr_err(err, errlen, "out of memory");
			return AG_NOMEM;
		}
		atomic_init(&c->r, r);
		c->tnext = head;
		head = c;
		changed = true;
		pthread_mutex_lock(&rr_mu);
		c->next = r->conns;
		if (r->conns != NULL) {
			r->conns->prev = c;
		}
		r->conns = c;
		pthread_mutex_unlock(&rr_mu);
	}
	if (changed && pthread_setspecific(rr_key, head) != 0) {
		/* Only a thread's first value can fail to be stored (glibc
		 * allocates then): HEAD is just C. */
		conn_destroy(head);
		rr_err(err, errlen, "out of memory");
		return AG_NOMEM;
	}
	if (c->ctx != NULL && !conn_quiet(c)) {
		conn_close(c);	/* closed by the server while idle */
	}
	rc = c->ctx == NULL ? conn_open(c, err, errlen) : AG_OK;
	*out = rc == AG_OK ? c : NULL;
	return rc;
}

/* ---- decisions ----------------------------------------------------------- */

/* R, KEY and KEYLEN usable; else AG_INVALID with ERR. */
static ag_status
key_ok(const struct ag_redis *r, const void *key, size_t keylen, char *err,
    size_t errlen)
{
	if (r == NULL || (key == NULL && keylen > 0)) {
		rr_err(err, errlen, "no Redis handle or no key");
		return AG_INVALID;
	}
	if (keylen > AG_RATE_KEY_MAX) {
		rr_err(err, errlen, "rate key of %zu bytes (at most %d)",
		    keylen, AG_RATE_KEY_MAX);
		return AG_INVALID;
	}
	return AG_OK;
}

/* LIM decidable (as ag_gcra() wants it); else AG_INVALID with ERR. */
static ag_status
lim_ok(const struct ag_rate_limit *lim, char *err, size_t errlen)
{
	if (lim == NULL || lim->window_ms == 0 ||
	    lim->window_ms > AG_RATE_WINDOW_MAX_MS) {
		rr_err(err, errlen, "no rate limit, or its window is 0 or "
		    "over %llu ms", (unsigned long long)AG_RATE_WINDOW_MAX_MS);
		return AG_INVALID;
	}
	return AG_OK;
}

/*
 * COST units under LIM (limit > 0) as Q + R / DEN us: exact when L / G
 * fits DEN, else R rounded up.  Q is held to RR_GIVE_MAX, which only a
 * release of more than LIMIT can reach.
 */
static void
inc_of(const struct ag_rate_limit *lim, uint64_t cost, struct rr_inc *in)
{
	uint64_t w = lim->window_ms * RR_US, l = lim->limit, g = gcd64(w, l);
	u128 q = (u128)cost * w / l, rem = (u128)cost * w % l;

	in->w = w, in->limit = l;
	in->den = l / g <= RR_DEN_MAX ? l / g : RR_DEN_MAX;
	in->unit = l / g <= RR_DEN_MAX ? w / g : 0;
	/* rem < L and DEN <= 2^52: no overflow; exact when unit != 0. */
	in->r = (uint64_t)div_up(rem * in->den, l);
	if (in->r == in->den) {
		q++, in->r = 0;
	}
	if (q > RR_GIVE_MAX) {
		q = RR_GIVE_MAX, in->r = 0;
	}
	in->q = (uint64_t)q;
}

/*
 * Run the script in MODE on KEY with IN (may be NULL: nothing to add or
 * give) and TAU; the reply, not an error reply, into *OUT and this
 * thread's connection into *CONN.
 */
static ag_status
script_run(struct ag_redis *r, const void *key, size_t keylen,
    const char *mode, const struct rr_inc *in, uint64_t tau,
    redisReply **out, struct rr_conn **conn, char *err, size_t errlen)
{
	char kbuf[RR_PREFIX_LEN + AG_RATE_KEY_MAX], num[4][24];
	const char *argv[9];
	size_t len[9];
	struct rr_conn *c;
	redisReply *rep;
	ag_status rc;
	int i, tries;

	*out = NULL;
	if ((rc = conn_get(r, &c, err, errlen)) != AG_OK) {
		return rc;
	}
	*conn = c;
	memcpy(kbuf, AG_REDIS_PREFIX, RR_PREFIX_LEN);
	if (keylen > 0) {
		memcpy(kbuf + RR_PREFIX_LEN, key, keylen);
	}
	snprintf(num[0], sizeof(num[0]), "%llu",
	    (unsigned long long)(in != NULL ? in->q : 0));
	snprintf(num[1], sizeof(num[1]), "%llu",
	    (unsigned long long)(in != NULL ? in->r : 0));
	snprintf(num[2], sizeof(num[2]), "%llu",
	    (unsigned long long)(in != NULL ? in->den : 1));
	snprintf(num[3], sizeof(num[3]), "%llu", (unsigned long long)tau);
	argv[0] = "EVALSHA", argv[1] = c->sha, argv[2] = "1";
	argv[3] = kbuf, argv[4] = mode;
	for (i = 0; i < 4; i++) {
		argv[5 + i] = num[i];
	}
	for (i = 0; i < 9; i++) {
		/* The key is bytes, not a string. */
		len[i] = i == 3 ? RR_PREFIX_LEN + keylen : strlen(argv[i]);
	}
	for (tries = 0;; tries++) {
		if ((rc = conn_call(c, 9, argv, len, &rep, err, errlen)) !=
		    AG_OK) {
			return rc;
		}
		if (tries > 0 || rep->type != REDIS_REPLY_ERROR ||
		    rep->len < 8 || memcmp(rep->str, "NOSCRIPT", 8) != 0) {
			break;
		}
		/* The server lost the script: load it again, once. */
		freeReplyObject(rep);
		if ((rc = script_load(c, err, errlen)) != AG_OK) {
			return rc;
		}
	}
	if (rep->type == REDIS_REPLY_ERROR) {
		return conn_replied_error(c, rep, "EVALSHA", err, errlen);
	}
	*out = rep;
	return AG_OK;
}

/* The integer element I of the array REP, in 0 .. RR_NUM_MAX - 1. */
static bool
reply_num(const redisReply *rep, size_t i, uint64_t *out)
{
	const redisReply *e = rep->element[i];

	if (e == NULL || e->type != REDIS_REPLY_INTEGER || e->integer < 0 ||
	    (unsigned long long)e->integer >= RR_NUM_MAX) {
		return false;
	}
	*out = (uint64_t)e->integer;
	return true;
}

/* How many units fit in AVAIL (1 / DEN us) under IN. */
static uint64_t
units_in(u128 avail, const struct rr_inc *in)
{
	u128 n;

	if (in->unit != 0) {
		n = avail / in->unit;
	} else {
		n = avail / in->den * in->limit / in->w;	/* < 2^117 */
	}
	return n < in->limit ? (uint64_t)n : in->limit;
}

/*
 * The decision from the take script's reply REP under IN into OUT, as
 * ag_gcra() would give it; false if the reply does not add up.
 */
static bool
take_decide(const redisReply *rep, const struct rr_inc *in,
    struct ag_rate_result *out)
{
	uint64_t v[4];
	u128 debt, cap, need, per_ms;
	size_t i;

	if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 4) {
		return false;
	}
	for (i = 0; i < 4; i++) {
		if (!reply_num(rep, i, &v[i])) {
			return false;
		}
	}
	/* v: allowed, TAT (us), FRAC (1 / DEN us), now (us) */
	if (v[0] > 1 || v[1] < v[3] || v[2] >= in->den || v[3] == 0) {
		return false;
	}
	debt = (u128)(v[1] - v[3]) * in->den + v[2];
	cap = (u128)in->w * in->den;
	per_ms = (u128)in->den * RR_US;
	if (v[0] == 1) {
		if (debt > cap) {
			return false;
		}
		out->allowed = true;
	} else {
		need = debt + (u128)in->q * in->den + in->r;
		if (need <= cap) {
			return false;
		}
		out->retry_ms = (uint64_t)div_up(need - cap, per_ms);
	}
	out->remaining = debt >= cap ? 0 : units_in(cap - debt, in);
	out->reset_ms = (uint64_t)div_up(debt, per_ms);
	return true;
}

ag_status
ag_redis_take(struct ag_redis *r, const void *key, size_t keylen,
    const struct ag_rate_limit *lim, uint64_t cost,
    struct ag_rate_result *out, char *err, size_t errlen)
{
	char tmp[RR_WHY_MAX];
	struct rr_conn *c = NULL;
	redisReply *rep;
	struct rr_inc in;
	ag_status rc;

	if (err == NULL || errlen == 0) {
		err = tmp, errlen = sizeof(tmp);
	}
	err[0] = '\0';
	if (out == NULL) {
		rr_err(err, errlen, "no result");
		return AG_INVALID;
	}
	memset(out, 0, sizeof(*out));
	if ((rc = key_ok(r, key, keylen, err, errlen)) != AG_OK ||
	    (rc = lim_ok(lim, err, errlen)) != AG_OK) {
		return rc;
	}
	if (lim->limit == 0 || cost > lim->limit) {
		/* Decided without the key's state: remaining and reset 0. */
		out->allowed = cost == 0;
		out->retry_ms = out->allowed ? 0 : AG_RATE_NEVER;
		return AG_OK;
	}
	inc_of(lim, cost, &in);
	rc = script_run(r, key, keylen, "take", &in, in.w, &rep, &c, err,
	    errlen);
	if (rc != AG_OK) {
		return rc;
	}
	if (!take_decide(rep, &in, out)) {
		memset(out, 0, sizeof(*out));
		return conn_replied_error(c, rep, "take", err, errlen);
	}
	freeReplyObject(rep);
	return AG_OK;
}

ag_status
ag_redis_release(struct ag_redis *r, const void *key, size_t keylen,
    const struct ag_rate_limit *lim, uint64_t cost, char *err, size_t errlen)
{
	char tmp[RR_WHY_MAX];
	struct rr_conn *c = NULL;
	redisReply *rep;
	struct rr_inc in;
	ag_status rc;

	if (err == NULL || errlen == 0) {
		err = tmp, errlen = sizeof(tmp);
	}
	err[0] = '\0';
	if ((rc = key_ok(r, key, keylen, err, errlen)) != AG_OK ||
	    (rc = lim_ok(lim, err, errlen)) != AG_OK) {
		return rc;
	}
	/* Under limit 0 nothing was taken: only say whether the key is. */
	if (lim->limit > 0) {
		inc_of(lim, cost, &in);
	}
	rc = script_run(r, key, keylen, "release", lim->limit > 0 ? &in : NULL,
	    lim->window_ms * RR_US, &rep, &c, err, errlen);
	if (rc != AG_OK) {
		return rc;
	}
	if (rep->type == REDIS_REPLY_NIL) {
		freeReplyObject(rep);
		return AG_NOTFOUND;
	}
	if (rep->type != REDIS_REPLY_INTEGER || rep->integer != 1) {
		return conn_replied_error(c, rep, "release", err, errlen);
	}
	freeReplyObject(rep);
	return AG_OK;
}

ag_status
ag_redis_reset(struct ag_redis *r, const void *key, size_t keylen,
    char *err, size_t errlen)
{
	char tmp[RR_WHY_MAX], kbuf[RR_PREFIX_LEN + AG_RATE_KEY_MAX];
	const char *argv[2] = { "DEL", kbuf };
	size_t len[2] = { 3, RR_PREFIX_LEN + keylen };
	struct rr_conn *c;
	redisReply *rep;
	ag_status rc;

	if (err == NULL || errlen == 0) {
		err = tmp, errlen = sizeof(tmp);
	}
	err[0] = '\0';
	if ((rc = key_ok(r, key, keylen, err, errlen)) != AG_OK ||
	    (rc = conn_get(r, &c, err, errlen)) != AG_OK) {
		return rc;
	}
	memcpy(kbuf, AG_REDIS_PREFIX, RR_PREFIX_LEN);
	if (keylen > 0) {
		memcpy(kbuf + RR_PREFIX_LEN, key, keylen);
	}
	if ((rc = conn_call(c, 2, argv, len, &rep, err, errlen)) != AG_OK) {
		return rc;
	}
	if (rep->type != REDIS_REPLY_INTEGER || rep->integer < 0 ||
	    rep->integer > 1) {
		return conn_replied_error(c, rep, "DEL", err, errlen);
	}
	rc = rep->integer == 1 ? AG_OK : AG_NOTFOUND;
	freeReplyObject(rep);
	return rc;
}

/* ---- listing ------------------------------------------------------------- */

/* The TAT in ns of a value V (LEN bytes) as the script writes it. */
static bool
value_tat(const char *v, size_t len, uint64_t *tat_ns)
{
	const char *c1 = memchr(v, ':', len), *c2, *end = v + len;
	uint64_t a, f = 0, d = 1;

	if (c1 == NULL) {
		if (!parse_num(v, len, RR_NUM_DIGITS, &a)) {
			return false;
		}
	} else {
		c2 = memchr(c1 + 1, ':', (size_t)(end - c1 - 1));
		if (c2 == NULL ||
		    !parse_num(v, (size_t)(c1 - v), RR_NUM_DIGITS, &a) ||
		    !parse_num(c1 + 1, (size_t)(c2 - c1 - 1), RR_NUM_DIGITS,
		    &f) ||
		    !parse_num(c2 + 1, (size_t)(end - c2 - 1), RR_NUM_DIGITS,
		    &d) || d == 0 || f >= d) {
			return false;
		}
	}
	if (a >= RR_NUM_MAX) {
		return false;
	}
	*tat_ns = a * RR_US + (uint64_t)div_up((u128)f * RR_US, d);
	return true;
}

/* Redis's time in ms from the reply to TIME. */
static bool
time_ms(const redisReply *rep, uint64_t *now_ms)
{
	const redisReply *s, *us;
	uint64_t sec, usec;

	if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 2) {
		return false;
	}
	s = rep->element[0], us = rep->element[1];
	if (s == NULL || us == NULL || s->type != REDIS_REPLY_STRING ||
	    us->type != REDIS_REPLY_STRING ||
	    !parse_num(s->str, s->len, 10, &sec) ||
	    !parse_num(us->str, us->len, 6, &usec)) {
		return false;
	}
	*now_ms = sec * 1000 + usec / RR_US;
	return true;
}

/*
 * One SCAN batch KEYS: read the values (MGET) and the time, and give CB
 * each key of ours that is still there; *STOP when CB says so.
 */
static ag_status
foreach_batch(struct rr_conn *c, const redisReply *keys,
    int (*cb)(void *, const void *, size_t, uint64_t, uint64_t), void *arg,
    bool *stop, char *err, size_t errlen)
{
	static const char *targv[] = { "TIME" };
	static const size_t tlen[] = { 4 };
	redisReply *vals = NULL, *tm = NULL, *e;
	const char **argv;
	uint64_t now_ms, tat;
	size_t i, m = 1, *len;
	ag_status rc = AG_OK;

	argv = calloc(keys->elements + 1, sizeof(*argv));
	len = calloc(keys->elements + 1, sizeof(*len));
	if (argv == NULL || len == NULL) {
		rr_err(err, errlen, "out of memory");
		rc = AG_NOMEM;
		goto out;
	}
	argv[0] = "MGET", len[0] = 4;
	for (i = 0; i < keys->elements; i++) {
		e = keys->element[i];
		if (e != NULL && e->type == REDIS_REPLY_STRING &&
		    e->len >= RR_PREFIX_LEN &&
		    e->len <= RR_PREFIX_LEN + AG_RATE_KEY_MAX &&
		    memcmp(e->str, AG_REDIS_PREFIX, RR_PREFIX_LEN) == 0) {
			argv[m] = e->str, len[m++] = e->len;
		}
	}
	if (m == 1) {
		goto out;
	}
	if ((rc = conn_call(c, (int)m, argv, len, &vals, err, errlen)) !=
	    AG_OK) {
		goto out;
	}
	if (vals->type != REDIS_REPLY_ARRAY || vals->elements != m - 1) {
		rc = conn_replied_error(c, vals, "MGET", err, errlen);
		vals = NULL;
		goto out;
	}
	if ((rc = conn_call(c, 1, targv, tlen, &tm, err, errlen)) != AG_OK) {
		goto out;
	}
	if (!time_ms(tm, &now_ms)) {
		rc = conn_replied_error(c, tm, "TIME", err, errlen);
		tm = NULL;
		goto out;
	}
	for (i = 0; i < m - 1 && !*stop; i++) {
		e = vals->element[i];
		if (e == NULL || e->type != REDIS_REPLY_STRING ||
		    !value_tat(e->str, e->len, &tat)) {
			continue;	/* gone since SCAN, or not ours */
		}
		*stop = cb(arg, argv[i + 1] + RR_PREFIX_LEN,
		    len[i + 1] - RR_PREFIX_LEN, tat, now_ms) != 0;
	}
out:
	if (vals != NULL) {
		freeReplyObject(vals);
	}
	if (tm != NULL) {
		freeReplyObject(tm);
	}
	free(argv);
	free(len);
	return rc;
}

/* The cursor from SCAN's reply REP into CURSOR, and its keys into *KEYS. */
static bool
scan_reply(const redisReply *rep, char cursor[24], const redisReply **keys)
{
	const redisReply *cur, *k;
	uint64_t v;

	if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 2) {
		return false;
	}
	cur = rep->element[0], k = rep->element[1];
	if (cur == NULL || k == NULL || cur->type != REDIS_REPLY_STRING ||
	    k->type != REDIS_REPLY_ARRAY || k->elements > RR_BATCH_MAX ||
	    cur->len > 20 || !parse_num(cur->str, cur->len, 20, &v)) {
		return false;
	}
	memcpy(cursor, cur->str, cur->len);
	cursor[cur->len] = '\0';
	*keys = k;
	return true;
}

ag_status
ag_redis_foreach(struct ag_redis *r,
    int (*cb)(void *arg, const void *key, size_t keylen, uint64_t tat_ns,
    uint64_t now_ms), void *arg, char *err, size_t errlen)
{
	char tmp[RR_WHY_MAX], cursor[24] = "0";
	const char *argv[] = { "SCAN", cursor, "MATCH", AG_REDIS_PREFIX "*",
		"COUNT", RR_SCAN_COUNT };
	size_t len[6];
	const redisReply *keys;
	struct rr_conn *c;
	redisReply *rep;
	bool stop = false;
	ag_status rc;
	int i;

	if (err == NULL || errlen == 0) {
		err = tmp, errlen = sizeof(tmp);
	}
	err[0] = '\0';
	if (r == NULL || cb == NULL) {
		rr_err(err, errlen, "no Redis handle or no callback");
		return AG_INVALID;
	}
	if ((rc = conn_get(r, &c, err, errlen)) != AG_OK) {
		return rc;
	}
	do {
		for (i = 0; i < 6; i++) {
			len[i] = strlen(argv[i]);
		}
		if ((rc = conn_call(c, 6, argv, len, &rep, err, errlen)) !=
		    AG_OK) {
			return rc;
		}
		if (!scan_reply(rep, cursor, &keys)) {
			return conn_replied_error(c, rep, "SCAN", err, errlen);
		}
		rc = foreach_batch(c, keys, cb, arg, &stop, err, errlen);
		freeReplyObject(rep);
	} while (rc == AG_OK && !stop && strcmp(cursor, "0") != 0);
	return rc;
}

/*
 * rate.c - the daemon's rate engine: backends, fallback, checkpoint and
 * the counters listing (see rate.h).
 *
 * The Redis handle is replaced only under the write side of a rwlock;
 * every call into it holds the read side, so a reload waits for the calls
 * in progress (each bounded by RateBackendTimeout) and never frees a
 * connection under a caller.
 *
 * An outage is one state, flipped with an atomic exchange, so that the
 * first failure logs "unavailable" and the first success after it logs
 * "back", however many threads see it.  A full local table is an episode
 * the same way: the first key that finds no room logs "full", and the
 * watcher (ag_rater_expire) logs "room again" once keys fit; so at most
 * one line each per watcher pass, never one per message.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "metrics.h"
#include "rate.h"
#include "ratelimit_redis.h"
#include "store.h"

#define NS AG_RATE_TAT_PER_MS

typedef unsigned __int128 u128;

struct ag_rater {
	struct ag_rate_table *local;
	pthread_rwlock_t lock;		/* guards the fields below */
	struct ag_redis *redis;		/* NULL: local engine */
	char *url;			/* as configured, for comparisons */
	enum ag_rate_fallback fallback;
	_Atomic bool down;		/* Redis outage in progress */
	_Atomic uint64_t down_since;	/* ms */
	uint64_t (*clock)(void *);
	void *clock_arg;
	size_t max_keys;		/* of the local table */
	_Atomic bool full;		/* the local table had no room */
	_Atomic uint64_t full_since;	/* ms */
	_Atomic uint64_t full_keys;	/* keys admitted uncounted since */
};

static uint64_t
wall_ms(void *arg)
{
	struct timespec ts;

	(void)arg;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static uint64_t
now_ms(struct ag_rater *r)
{
	return r->clock(r->clock_arg);
}

ag_status
ag_rater_new(size_t max_keys, struct ag_rater **out)
{
	struct ag_rater *r;
	ag_status st;

	*out = NULL;
	r = calloc(1, sizeof(*r));
	if (r == NULL) {
		return AG_NOMEM;
	}
	st = ag_rate_table_new(max_keys, &r->local);
	if (st != AG_OK) {
		free(r);
		return st;
	}
	if (pthread_rwlock_init(&r->lock, NULL) != 0) {
		ag_rate_table_free(r->local);
		free(r);
		return AG_NOMEM;
	}
	r->clock = wall_ms;
	r->max_keys = max_keys;
	*out = r;
	return AG_OK;
}

void
ag_rater_free(struct ag_rater *r)
{
	if (r == NULL) {
		return;
	}
	ag_redis_free(r->redis);
	free(r->url);
	ag_rate_table_free(r->local);
	pthread_rwlock_destroy(&r->lock);
	free(r);
}

void
ag_rater_set_clock(struct ag_rater *r, uint64_t (*fn)(void *), void *arg)
{
	r->clock = fn != NULL ? fn : wall_ms;
	r->clock_arg = arg;
}

void
ag_rater_configure(struct ag_rater *r, const struct ag_config *cfg)
{
	struct ag_redis *nr = NULL, *old = NULL;
	char err[256];
	const char *url = ag_config_rate_redis(cfg) ? cfg->rate_backend : NULL;
	char *ncopy = NULL;

	pthread_rwlock_wrlock(&r->lock);
	r->fallback = cfg->on_rate_backend_error;
	if ((url == NULL && r->url == NULL) ||
	    (url != NULL && r->url != NULL && strcmp(url, r->url) == 0)) {
		pthread_rwlock_unlock(&r->lock);
		return;
	}
	if (url != NULL) {
		if (ag_redis_new(url, cfg->rate_backend_timeout, &nr, err,
		    sizeof(err)) != AG_OK || (ncopy = strdup(url)) == NULL) {
			ag_log_err("RateBackend: %s; rate counters stay local",
			    nr == NULL ? err : "out of memory");
			ag_redis_free(nr);
			nr = NULL;
		}
	}
	old = r->redis;
	r->redis = nr;
	free(r->url);
	r->url = ncopy;
	atomic_store(&r->down, false);
	pthread_rwlock_unlock(&r->lock);
	ag_redis_free(old);
	if (nr != NULL) {
		ag_log_notice("rate counters in %s (On-RateBackendError %s)",
		    ag_redis_url(nr), r->fallback == AG_RB_LOCAL ? "local" :
		    r->fallback == AG_RB_TEMPFAIL ? "tempfail" : "accept");
	}
}

/* Redis answered: end an outage, if one was on. */
static void
backend_up(struct ag_rater *r)
{
	if (atomic_load_explicit(&r->down, memory_order_relaxed) &&
	    atomic_exchange(&r->down, false)) {
		ag_log_notice("rate backend %s is back after %llu s",
		    ag_redis_url(r->redis), (unsigned long long)
		    ((now_ms(r) - atomic_load(&r->down_since)) / 1000));
	}
}

/* Redis failed: start an outage (logged once). */
static void
backend_down(struct ag_rater *r, const char *why)
{
	if (!atomic_exchange(&r->down, true)) {
		atomic_store(&r->down_since, now_ms(r));
		ag_log_err("rate backend %s unavailable: %s; %s until it is back",
		    ag_redis_url(r->redis), why,
		    r->fallback == AG_RB_LOCAL ? "counting locally" :
		    r->fallback == AG_RB_TEMPFAIL ? "answering 451 4.3.0" :
		    "not counting");
	}
}

/* A new key found the local table full: counted, and logged once. */
static void
table_full(struct ag_rater *r)
{
	ag_metrics_rate_table_full();
	atomic_fetch_add_explicit(&r->full_keys, 1, memory_order_relaxed);
	if (!atomic_load_explicit(&r->full, memory_order_relaxed) &&
	    !atomic_exchange(&r->full, true)) {
		atomic_store(&r->full_since, now_ms(r));
		ag_log_warning("rate limits: the table of counters is full "
		    "(RateMaxKeys %zu): new keys are not limited until idle "
		    "ones expire", r->max_keys);
	}
}

/* The watcher: end a full episode once the table has room again. */
static void
table_room(struct ag_rater *r)
{
	struct ag_rate_stats rs;
	uint64_t now, since;

	if (!atomic_load_explicit(&r->full, memory_order_relaxed)) {
		return;
	}
	ag_rate_table_stats(r->local, &rs);
	if (rs.keys < r->max_keys && atomic_exchange(&r->full, false)) {
		now = now_ms(r);
		since = atomic_load(&r->full_since);
		ag_log_notice("rate limits: the table of counters has room "
		    "again after %llu s; %llu new keys were not limited",
		    (unsigned long long)(now > since ? (now - since) / 1000 : 0),
		    (unsigned long long)atomic_exchange(&r->full_keys, 0));
	}
}

ag_status
ag_rater_take(struct ag_rater *r, const char *key, size_t keylen,
    const struct ag_rate_limit *lim, uint64_t cost,
    struct ag_rate_result *out, enum ag_rate_where *where)
{
	char err[256];
	ag_status st;

	*where = AG_RW_NONE;
	pthread_rwlock_rdlock(&r->lock);
	if (r->redis != NULL) {
		st = ag_redis_take(r->redis, key, keylen, lim, cost, out, err,
		    sizeof(err));
		if (st == AG_OK) {
			backend_up(r);
			*where = AG_RW_REDIS;
			pthread_rwlock_unlock(&r->lock);
			return AG_OK;
		}
		if (st == AG_INVALID) {
			pthread_rwlock_unlock(&r->lock);
			return st;
		}
		/* unreachable, slow, an error, or no memory for the call */
		backend_down(r, err);
		ag_metrics_redis_error(r->fallback == AG_RB_LOCAL);
		if (r->fallback != AG_RB_LOCAL) {
			st = r->fallback == AG_RB_TEMPFAIL ? AG_TEMPFAIL : AG_OK;
			memset(out, 0, sizeof(*out));
			out->allowed = true;
			pthread_rwlock_unlock(&r->lock);
			return st;
		}
	}
	pthread_rwlock_unlock(&r->lock);
	st = ag_rate_take(r->local, key, keylen, lim, cost, now_ms(r), out);
	if (st == AG_OK && out->uncounted) {
		table_full(r);
	} else if (st == AG_OK) {
		*where = AG_RW_LOCAL;
	}
	return st;
}

void
ag_rater_release(struct ag_rater *r, const char *key, size_t keylen,
    const struct ag_rate_limit *lim, uint64_t cost, enum ag_rate_where where)
{
	char err[256];

	if (cost == 0) {
		return;
	}
	if (where == AG_RW_LOCAL) {
		(void)ag_rate_release(r->local, key, keylen, lim, cost,
		    now_ms(r));
	} else if (where == AG_RW_REDIS) {
		pthread_rwlock_rdlock(&r->lock);
		if (r->redis != NULL && ag_redis_release(r->redis, key, keylen,
		    lim, cost, err, sizeof(err)) == AG_TEMPFAIL) {
			ag_metrics_redis_error(false);
			ag_log_debug("rate: could not give back %.*s: %s",
			    (int)keylen, key, err);
		}
		pthread_rwlock_unlock(&r->lock);
	}
}

void
ag_rater_expire(struct ag_rater *r)
{
	(void)ag_rate_expire(r->local, now_ms(r));
	table_room(r);
}

/* ---- checkpoint -------------------------------------------------------- */

/* Keys packed one after another: u16 length, key bytes, u64 TAT. */
struct pack {
	unsigned char *buf;
	size_t len, cap, off;
	uint64_t now_ns;
	bool nomem;
	/* what next() hands out */
	uint64_t tat;
};

static int
pack_add(void *arg, const void *key, size_t keylen, uint64_t tat)
{
	struct pack *p = arg;
	size_t need = 2 + keylen + 8;
	uint16_t kl = (uint16_t)keylen;

	if (tat <= p->now_ns) {
		return 0;	/* fresh: nothing worth keeping */
	}
	if (p->len + need > p->cap) {
		size_t ncap = p->cap ? p->cap * 2 : 65536;
		unsigned char *nb;

		while (ncap < p->len + need) {
			ncap *= 2;
		}
		if ((nb = realloc(p->buf, ncap)) == NULL) {
			p->nomem = true;
			return 1;
		}
		p->buf = nb;
		p->cap = ncap;
	}
	memcpy(p->buf + p->len, &kl, 2);
	memcpy(p->buf + p->len + 2, key, keylen);
	memcpy(p->buf + p->len + 2 + keylen, &tat, 8);
	p->len += need;
	return 0;
}

static int
pack_next(void *arg, const void **key, size_t *keylen, uint64_t *tat)
{
	struct pack *p = arg;
	uint16_t kl;

	if (p->off + 2 > p->len) {
		return 0;
	}
	memcpy(&kl, p->buf + p->off, 2);
	*key = p->buf + p->off + 2;
	*keylen = kl;
	memcpy(tat, p->buf + p->off + 2 + kl, 8);
	p->off += 2 + (size_t)kl + 8;
	return 1;
}

void
ag_rater_owner(const struct ag_config *cfg, char *buf, size_t bufsz)
{
	char host[256];

	if (gethostname(host, sizeof(host)) != 0) {
		snprintf(host, sizeof(host), "localhost");
	}
	host[sizeof(host) - 1] = '\0';
	snprintf(buf, bufsz, "%s %s", host, cfg->socket);
}

ag_status
ag_rater_checkpoint(struct ag_rater *r, struct ag_store *s, const char *owner)
{
	struct pack p;
	size_t n = 0;
	ag_status st;

	memset(&p, 0, sizeof(p));
	p.now_ns = now_ms(r) * NS;
	ag_rate_foreach(r->local, pack_add, &p);
	if (p.nomem) {
		free(p.buf);
		ag_log_err("rate checkpoint: out of memory");
		return AG_NOMEM;
	}
	st = ag_store_rate_save(s, owner, pack_next, &p, &n);
	free(p.buf);
	if (st != AG_OK) {
		ag_log_err("rate checkpoint not saved: %s", ag_store_errstr(s));
		return st;
	}
	ag_log_debug("rate checkpoint: %zu counters saved", n);
	return AG_OK;
}

struct restore {
	struct ag_rater *r;
	uint64_t now_ns;
	size_t n, failed;
};

static void
restore_one(void *arg, const void *key, size_t keylen, uint64_t tat)
{
	struct restore *rs = arg;

	if (tat <= rs->now_ns) {
		return;
	}
	if (ag_rate_restore(rs->r->local, key, keylen, tat) == AG_OK) {
		rs->n++;
	} else {
		rs->failed++;
	}
}

ag_status
ag_rater_restore(struct ag_rater *r, struct ag_store *s, const char *owner)
{
	struct restore rs = { r, now_ms(r) * NS, 0, 0 };
	ag_status st;

	st = ag_store_rate_load(s, owner, restore_one, &rs);
	if (st != AG_OK) {
		ag_log_err("rate counters not restored: %s", ag_store_errstr(s));
		return st;
	}
	if (rs.n > 0 || rs.failed > 0) {
		ag_log_info("rate: %zu counters restored from the checkpoint%s",
		    rs.n, rs.failed > 0 ? " (some did not fit RateMaxKeys)" : "");
	}
	return AG_OK;
}

/* ---- counters ------------------------------------------------------------ */

/* Does KEY (KEYLEN bytes) pass the filters of a listing or a reset? */
static bool
key_selected(const char *key, size_t keylen, int64_t rule, const char *want)
{
	const char *colon, *eq;
	char prefix[32];
	size_t wl, pl;

	if (rule > 0) {
		pl = (size_t)snprintf(prefix, sizeof(prefix), "%lld.",
		    (long long)rule);
		if (keylen < pl || memcmp(key, prefix, pl) != 0) {
			return false;
		}
	}
	if (want == NULL) {
		return true;
	}
	wl = strlen(want);
	if (wl == keylen && memcmp(key, want, wl) == 0) {
		return true;
	}
	colon = memchr(key, ':', keylen);
	if (colon == NULL) {
		return false;
	}
	colon++;
	if ((size_t)(key + keylen - colon) == wl && memcmp(colon, want, wl) == 0) {
		return true;
	}
	eq = memchr(colon, '=', (size_t)(key + keylen - colon));
	if (eq == NULL) {
		return false;
	}
	eq++;
	return (size_t)(key + keylen - eq) == wl && memcmp(eq, want, wl) == 0;
}

/* One counter as collected for a listing or a reset. */
struct counter {
	char key[AG_RATE_KEY_MAX + 1];
	size_t keylen;
	uint64_t tat_ns, now_ms;
	enum ag_rate_where where;
};

struct collect {
	struct counter *v;
	size_t n, cap;
	int64_t rule;
	const char *want;
	enum ag_rate_where where;
	uint64_t now_ms;
	bool nomem;
};

static int
collect_add(struct collect *c, const void *key, size_t keylen, uint64_t tat,
    uint64_t now)
{
	if (tat <= now * NS || keylen > AG_RATE_KEY_MAX ||
	    !key_selected(key, keylen, c->rule, c->want)) {
		return 0;
	}
	if (c->n == c->cap) {
		size_t ncap = c->cap ? c->cap * 2 : 64;
		struct counter *nv = reallocarray(c->v, ncap, sizeof(*nv));

		if (nv == NULL) {
			c->nomem = true;
			return 1;
		}
		c->v = nv;
		c->cap = ncap;
	}
	memcpy(c->v[c->n].key, key, keylen);
	c->v[c->n].key[keylen] = '\0';
	c->v[c->n].keylen = keylen;
	c->v[c->n].tat_ns = tat;
	c->v[c->n].now_ms = now;
	c->v[c->n].where = c->where;
	c->n++;
	return 0;
}

static int
collect_local(void *arg, const void *key, size_t keylen, uint64_t tat)
{
	struct collect *c = arg;

	return collect_add(c, key, keylen, tat, c->now_ms);
}

static int
collect_redis(void *arg, const void *key, size_t keylen, uint64_t tat,
    uint64_t now)
{
	return collect_add(arg, key, keylen, tat, now);
}

static int
counter_cmp(const void *a, const void *b)
{
	const struct counter *x = a, *y = b;

	if (x->where != y->where) {
		return x->where < y->where ? -1 : 1;
	}
	return strcmp(x->key, y->key);
}

/* Collect the selected counters of every backend. */
static ag_status
collect_all(struct ag_rater *r, struct collect *c, char *err, size_t errlen)
{
	ag_status st = AG_OK;

	c->where = AG_RW_LOCAL;
	c->now_ms = now_ms(r);
	ag_rate_foreach(r->local, collect_local, c);
	pthread_rwlock_rdlock(&r->lock);
	if (r->redis != NULL && !c->nomem) {
		c->where = AG_RW_REDIS;
		st = ag_redis_foreach(r->redis, collect_redis, c, err, errlen);
	}
	pthread_rwlock_unlock(&r->lock);
	if (c->nomem) {
		snprintf(err, errlen, "out of memory");
		return AG_NOMEM;
	}
	if (c->n > 1) {
		qsort(c->v, c->n, sizeof(*c->v), counter_cmp);
	}
	return st;
}

/* The rule and limit a key names ("RULE.N:..."), or NULL. */
static const struct ag_rate_spec *
key_spec(const struct ag_policy *p, const char *key, int64_t *rule)
{
	const struct ag_rule *r;
	char *end;
	long long id;
	unsigned long n;

	id = strtoll(key, &end, 10);
	*rule = id;
	if (end == key || *end != '.') {
		return NULL;
	}
	n = strtoul(end + 1, &end, 10);
	if (*end != ':' || (r = ag_policy_find(p, id)) == NULL || n < 1 ||
	    n > r->nrate) {
		return NULL;
	}
	return &r->rate[n - 1];
}

/* Write S as a JSON string (keys are bytes from the network). */
static void
json_str(FILE *out, const char *s)
{
	fputc('"', out);
	for (; *s != '\0'; s++) {
		unsigned char ch = (unsigned char)*s;

		if (ch == '"' || ch == '\\') {
			fprintf(out, "\\%c", ch);
		} else if (ch < 0x20 || ch >= 0x7f) {
			fprintf(out, "\\u%04x", ch);
		} else {
			fputc(ch, out);
		}
	}
	fputc('"', out);
}

/* Write S for the table: printable ASCII, the rest as \xHH. */
static void
text_str(FILE *out, const char *s, int width)
{
	int n = 0;

	for (; *s != '\0'; s++) {
		unsigned char ch = (unsigned char)*s;

		if (ch <= 0x20 || ch >= 0x7f || ch == '\\') {
			n += fprintf(out, "\\x%02x", ch);
		} else {
			fputc(ch, out);
			n++;
		}
	}
	for (; n < width; n++) {
		fputc(' ', out);
	}
}

ag_status
ag_rater_list(struct ag_rater *r, const struct ag_policy *policy,
    int64_t rule, const char *key, bool json, FILE *out, char *err,
    size_t errlen)
{
	struct collect c;
	ag_status st;
	size_t i;

	memset(&c, 0, sizeof(c));
	c.rule = rule;
	c.want = key;
	err[0] = '\0';
	st = collect_all(r, &c, err, errlen);
	if (st == AG_NOMEM) {
		free(c.v);
		return st;
	}
	if (json) {
		fputs("[", out);
	} else {
		fprintf(out, "%-44s %-7s %-6s %-34s %12s %12s %9s\n", "KEY",
		    "BACKEND", "RULE", "LIMIT", "USED", "REMAINING", "RESET_S");
	}
	for (i = 0; i < c.n; i++) {
		const struct counter *k = &c.v[i];
		const struct ag_rate_spec *sp;
		uint64_t debt = k->tat_ns - k->now_ms * NS, used = 0, left = 0;
		uint64_t reset_s = (debt + 1000000000ULL - 1) / 1000000000ULL;
		char spec[AG_RATE_SPEC_MAX] = "-";
		int64_t id;

		sp = key_spec(policy, k->key, &id);
		if (sp != NULL) {
			u128 u = ((u128)debt * sp->limit +
			    (u128)sp->window_ms * NS - 1) /
			    ((u128)sp->window_ms * NS);

			used = u > sp->limit ? sp->limit : (uint64_t)u;
			left = sp->limit - used;
			ag_rate_spec_format(sp, spec, sizeof(spec));
		}
		if (json) {
			fprintf(out, "%s\n {\"key\": ", i ? "," : "");
			json_str(out, k->key);
			fprintf(out, ", \"backend\": \"%s\", \"rule\": %lld, ",
			    k->where == AG_RW_REDIS ? "redis" : "local",
			    (long long)id);
			if (sp != NULL) {
				fprintf(out, "\"rate\": \"%s\", \"measure\": \"%s\", "
				    "\"limit\": %llu, \"window_seconds\": %llu, "
				    "\"used\": %llu, \"remaining\": %llu, ", spec,
				    ag_rate_measure_name(sp->measure),
				    (unsigned long long)sp->limit,
				    (unsigned long long)(sp->window_ms / 1000),
				    (unsigned long long)used,
				    (unsigned long long)left);
			} else {
				fputs("\"rate\": null, \"measure\": null, "
				    "\"limit\": null, \"window_seconds\": null, "
				    "\"used\": null, \"remaining\": null, ", out);
			}
			fprintf(out, "\"reset_seconds\": %llu}",
			    (unsigned long long)reset_s);
			continue;
		}
		text_str(out, k->key, 44);
		fprintf(out, " %-7s %-6lld %-34s ", k->where == AG_RW_REDIS ?
		    "redis" : "local", (long long)id, spec);
		if (sp != NULL) {
			fprintf(out, "%12llu %12llu", (unsigned long long)used,
			    (unsigned long long)left);
		} else {
			fprintf(out, "%12s %12s", "-", "-");
		}
		fprintf(out, " %9llu\n", (unsigned long long)reset_s);
	}
	if (json) {
		fputs(c.n ? "\n]\n" : "]\n", out);
	}
	free(c.v);
	return st;
}

ag_status
ag_rater_reset(struct ag_rater *r, const char *key, size_t *n, char *err,
    size_t errlen)
{
	struct collect c;
	ag_status st, rst;
	size_t i;

	memset(&c, 0, sizeof(c));
	c.want = key;
	*n = 0;
	err[0] = '\0';
	st = collect_all(r, &c, err, errlen);
	if (st == AG_NOMEM) {
		free(c.v);
		return st;
	}
	for (i = 0; i < c.n; i++) {
		if (c.v[i].where == AG_RW_LOCAL) {
			rst = ag_rate_restore(r->local, c.v[i].key,
			    c.v[i].keylen, 0);
		} else {
			pthread_rwlock_rdlock(&r->lock);
			rst = r->redis == NULL ? AG_NOTFOUND :
			    ag_redis_reset(r->redis, c.v[i].key,
			    c.v[i].keylen, err, errlen);
			pthread_rwlock_unlock(&r->lock);
			if (rst == AG_TEMPFAIL) {
				st = rst;
			}
		}
		if (rst == AG_OK) {
			(*n)++;
		}
	}
	if (*n > 0) {
		char esc[2 * AG_RATE_KEY_MAX];

		/* the key came over the control socket: escaped for the log */
		ag_log_notice("rate: %zu counters matching '%s' reset", *n,
		    ag_log_escape(esc, sizeof(esc), key));
	}
	free(c.v);
	return st;
}

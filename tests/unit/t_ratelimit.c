/*
 * t_ratelimit.c - unit tests for lib/ratelimit.c: GCRA with an injected
 * clock (bursts, steady rates, the exact millisecond a unit comes back,
 * long idle, clock going backwards, limits 0, 1 and 2^63, windows up to
 * the maximum, cost > 1, release, limits that do not divide the window),
 * checked step by step, against an exact rational model and against the
 * bound "LIMIT + D / T in any interval D"; then the table (many keys, a
 * full table, expiry, foreach, restore, hostile keys, allocation failure)
 * and threads (200 on one key, 16 on their own keys, eviction races).
 * Table-driven: every case has a label that a failure names.
 *
 * Allocation failure: this program replaces malloc, calloc and
 * posix_memalign with wrappers that can be told to fail the Nth call.
 */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dlfcn.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ratelimit.h"

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))
#define SEC 1000ULL
#define HOUR (3600 * SEC)
#define DAY (24 * HOUR)
#define NEVER AG_RATE_NEVER

typedef unsigned __int128 u128;

/* ---- allocation failure ---------------------------------------------- */

/* The wrappers run before the sanitizers are up: not instrumented. */
#define NO_SANITIZE \
	__attribute__((no_sanitize("address", "undefined", "thread")))

static long alloc_countdown = -1;	/* calls until one fails; -1 never */
static bool alloc_resolving;
static void *(*next_malloc)(size_t);
static void *(*next_calloc)(size_t, size_t);
static int (*next_memalign)(void **, size_t, size_t);

/* Find the allocator this program's wrappers stand in front of. */
NO_SANITIZE static bool
alloc_resolve(void)
{
	if (next_malloc != NULL && next_calloc != NULL &&
	    next_memalign != NULL) {
		return true;
	}
	if (alloc_resolving) {
		return false;	/* dlsym allocating: let it fail */
	}
	alloc_resolving = true;
	next_malloc = (void *(*)(size_t))dlsym(RTLD_NEXT, "malloc");
	next_calloc = (void *(*)(size_t, size_t))dlsym(RTLD_NEXT, "calloc");
	next_memalign = (int (*)(void **, size_t, size_t))dlsym(RTLD_NEXT,
	    "posix_memalign");
	alloc_resolving = false;
	return next_malloc != NULL && next_calloc != NULL &&
	    next_memalign != NULL;
}

/* True when this call is the one that should fail (main thread only). */
NO_SANITIZE static bool
alloc_fails(void)
{
	if (alloc_countdown < 0) {
		return false;
	}
	if (alloc_countdown == 0) {
		alloc_countdown = -1;
		return true;
	}
	alloc_countdown--;
	return false;
}

/* malloc that fails when alloc_countdown runs out. */
NO_SANITIZE void *
malloc(size_t n)
{
	if (!alloc_resolve() || alloc_fails()) {
		return NULL;
	}
	return next_malloc(n);
}

/* calloc that fails when alloc_countdown runs out. */
NO_SANITIZE void *
calloc(size_t n, size_t size)
{
	if (!alloc_resolve() || alloc_fails()) {
		return NULL;
	}
	return next_calloc(n, size);
}

/* posix_memalign that fails when alloc_countdown runs out. */
NO_SANITIZE int
posix_memalign(void **p, size_t align, size_t n)
{
	if (!alloc_resolve() || alloc_fails()) {
		return 12;	/* ENOMEM */
	}
	return next_memalign(p, align, n);
}

/* ---- helpers ------------------------------------------------------------ */

/* Fail naming LABEL unless status GOT equals WANT. */
static void
check_status(const char *label, ag_status got, ag_status want)
{
	if (got != want) {
		fail_msg("%s: status %s, want %s", label, ag_status_str(got),
		    ag_status_str(want));
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

/* Fail naming LABEL unless R is the decision WANT. */
static void
check_result(const char *label, const struct ag_rate_result *r,
    const struct ag_rate_result *want)
{
	if (r->allowed != want->allowed) {
		fail_msg("%s: %s, want %s", label, r->allowed ? "allowed" :
		    "refused", want->allowed ? "allowed" : "refused");
	}
	check_u64(label, "retry_ms", r->retry_ms, want->retry_ms);
	check_u64(label, "remaining", r->remaining, want->remaining);
	check_u64(label, "reset_ms", r->reset_ms, want->reset_ms);
}

/* A decision from the table: take COST of KEY, expecting status AG_OK. */
static struct ag_rate_result
take(const char *label, struct ag_rate_table *t, const void *key,
    size_t keylen, const struct ag_rate_limit *lim, uint64_t cost,
    uint64_t now)
{
	struct ag_rate_result r;

	check_status(label, ag_rate_take(t, key, keylen, lim, cost, now, &r),
	    AG_OK);
	return r;
}

/* A new table of MAX keys. */
static struct ag_rate_table *
table(size_t max)
{
	struct ag_rate_table *t = NULL;

	check_status("table_new", ag_rate_table_new(max, &t), AG_OK);
	return t;
}

/* A binary key for number I (with NUL bytes inside). */
static size_t
nkey(unsigned char *buf, uint32_t i)
{
	memcpy(buf, "r1\0ip\0", 6);
	memcpy(buf + 6, &i, sizeof(i));
	return 6 + sizeof(i);
}

/* xorshift64*: repeatable pseudo-random numbers for the property tests. */
static uint64_t
rnd(uint64_t *s)
{
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return *s * 2685821657736338717ULL;
}

/* ---- GCRA: scripted steps ------------------------------------------------ */

enum op { TAKE = 1, RELEASE };

struct step {
	enum op op;
	uint64_t now, cost;
	bool allowed;
	uint64_t retry, remaining, reset;
};

struct script {
	const char *label;
	struct ag_rate_limit lim;
	struct step steps[16];
};

#define T_OK(now, cost, rem, reset) { TAKE, now, cost, true, 0, rem, reset }
#define T_NO(now, cost, retry, rem, reset) \
	{ TAKE, now, cost, false, retry, rem, reset }
#define REL(now, cost) { RELEASE, now, cost, false, 0, 0, 0 }

static const struct script scripts[] = {
	{ "3 per 10 s: burst, then the exact ms of each unit", { 3, 10 * SEC }, {
		T_OK(0, 1, 2, 3334), T_OK(0, 1, 1, 6667), T_OK(0, 1, 0, 10000),
		T_NO(0, 1, 3334, 0, 10000), T_NO(3333, 1, 1, 0, 6667),
		T_OK(3334, 1, 0, 10000), T_NO(6666, 1, 1, 0, 6668),
		T_OK(6667, 1, 0, 10000), T_NO(9999, 1, 1, 0, 6668),
		T_OK(10000, 1, 0, 10000), T_NO(10000, 1, 3334, 0, 10000),
		T_OK(30000, 3, 0, 10000), T_NO(30000, 1, 3334, 0, 10000) } },
	{ "1 per second", { 1, SEC }, {
		T_OK(0, 1, 0, 1000), T_NO(0, 1, 1000, 0, 1000),
		T_NO(999, 1, 1, 0, 1), T_OK(1000, 1, 0, 1000),
		T_NO(1500, 1, 500, 0, 500), T_NO(5000, 2, NEVER, 1, 0),
		T_OK(5000, 0, 1, 0), T_OK(5000, 1, 0, 1000) } },
	{ "limit 0 admits nothing", { 0, SEC }, {
		T_NO(0, 1, NEVER, 0, 0), T_NO(1000000, 1, NEVER, 0, 0),
		T_OK(5, 0, 0, 0), REL(5, 1), T_NO(5, 1, NEVER, 0, 0) } },
	{ "cost > 1, 10 per second", { 10, SEC }, {
		T_OK(0, 4, 6, 400), T_OK(0, 6, 0, 1000), T_NO(0, 1, 100, 0, 1000),
		T_NO(250, 3, 50, 2, 750), T_OK(300, 3, 0, 1000),
		T_NO(300, 10, 1000, 0, 1000), T_NO(300, 11, NEVER, 0, 1000),
		T_OK(1300, 10, 0, 1000) } },
	{ "release restores exactly", { 2, SEC }, {
		T_OK(0, 1, 1, 500), T_OK(0, 1, 0, 1000), T_NO(0, 1, 500, 0, 1000),
		REL(0, 1), T_OK(0, 1, 0, 1000), REL(100, 2),
		T_OK(100, 2, 0, 1000), REL(100, 5), T_OK(100, 1, 1, 500),
		REL(100, 1), REL(100, 1), T_OK(100, 0, 2, 0) } },
	{ "clock backwards grants nothing", { 2, SEC }, {
		T_OK(10000, 2, 0, 1000), T_NO(9000, 1, 1500, 0, 2000),
		T_NO(0, 1, 10500, 0, 11000), T_NO(10499, 1, 1, 0, 501),
		T_OK(10500, 1, 0, 1000), T_OK(100000, 1, 1, 500),
		T_NO(50000, 1, 50000, 0, 50500), T_OK(100000, 1, 0, 1000) } },
	{ "long idle: fresh again after the window", { 100, DAY }, {
		T_OK(1, 100, 0, DAY), T_NO(DAY, 100, 1, 99, 1),
		T_OK(DAY + 1, 100, 0, DAY), T_OK(365 * DAY, 50, 50, DAY / 2) } },
	{ "2^63 per day", { 1ULL << 63, DAY }, {
		T_OK(1000000000000ULL, 1ULL << 63, 0, DAY),
		T_NO(1000000000000ULL, 1, 1, 0, DAY),
		T_OK(1000000000001ULL, 1, 106751991166ULL, DAY),
		/* Above 10^6 per window the TAT's 1 ns rounds against the
		 * sender: here 1 ns is 106752 units of 2^63. */
		T_NO(1000000000001ULL, UINT64_MAX, NEVER, 106751884415ULL, DAY),
		T_OK(2000000000000ULL, 0, 1ULL << 63, 0) } },
	{ "2^64-1 per longest window at the end of time",
	    { UINT64_MAX, AG_RATE_WINDOW_MAX_MS }, {
		T_OK(UINT64_MAX, UINT64_MAX, 0, AG_RATE_WINDOW_MAX_MS),
		T_NO(UINT64_MAX, 1, 1, 0, AG_RATE_WINDOW_MAX_MS),
		T_NO(AG_RATE_NOW_MAX_MS, 1, 1, 0, AG_RATE_WINDOW_MAX_MS),
		T_NO(0, 1, AG_RATE_NOW_MAX_MS + 1, 0,
		    AG_RATE_NOW_MAX_MS + AG_RATE_WINDOW_MAX_MS) } },
	{ "1 per longest window", { 1, AG_RATE_WINDOW_MAX_MS }, {
		T_OK(5, 1, 0, AG_RATE_WINDOW_MAX_MS),
		T_NO(6, 1, AG_RATE_WINDOW_MAX_MS - 1, 0,
		    AG_RATE_WINDOW_MAX_MS - 1),
		T_OK(AG_RATE_WINDOW_MAX_MS + 5, 1, 0, AG_RATE_WINDOW_MAX_MS) } },
	{ "window 0 is invalid", { 10, 0 }, {
		T_NO(0, 1, NEVER, 0, 0), T_NO(0, 0, NEVER, 0, 0) } },
	{ "window over the maximum is invalid",
	    { 10, AG_RATE_WINDOW_MAX_MS + 1 }, { T_NO(0, 1, NEVER, 0, 0) } },
};

/* Each script through ag_gcra on one TAT, and through a table. */
static void
test_gcra_scripts(void **state)
{
	struct ag_rate_table *t = table(16);
	struct ag_rate_result r, want;
	const struct step *s;
	char label[160];
	uint64_t tat;
	size_t i, j;

	(void)state;
	for (i = 0; i < NELEM(scripts); i++) {
		tat = 0;
		for (j = 0; j < NELEM(scripts[i].steps); j++) {
			s = &scripts[i].steps[j];
			snprintf(label, sizeof(label), "%s, step %zu",
			    scripts[i].label, j + 1);
			if (s->op == RELEASE) {
				ag_gcra_release(&tat, &scripts[i].lim, s->cost,
				    s->now);
				(void)ag_rate_release(t, &i, sizeof(i),
				    &scripts[i].lim, s->cost, s->now);
				continue;
			}
			if (s->op != TAKE) {
				break;
			}
			want = (struct ag_rate_result){ .allowed = s->allowed,
				.retry_ms = s->retry, .remaining = s->remaining,
				.reset_ms = s->reset };
			ag_gcra(&tat, &scripts[i].lim, s->cost, s->now, &r);
			check_result(label, &r, &want);
			if (ag_rate_take(t, &i, sizeof(i), &scripts[i].lim,
			    s->cost, s->now, &r) == AG_INVALID) {
				r = (struct ag_rate_result){ .allowed = false,
					.retry_ms = NEVER };
			}
			strncat(label, " (table)", sizeof(label) -
			    strlen(label) - 1);
			check_result(label, &r, &want);
		}
	}
	ag_gcra(&tat, NULL, 1, 0, &r);
	want = (struct ag_rate_result){ .allowed = false, .retry_ms = NEVER };
	check_result("NULL limit", &r, &want);
	ag_rate_table_free(t);
}

/* ---- GCRA: the long run ------------------------------------------------ */

/*
 * Greedy traffic for a long time, jumping by retry_ms when refused:
 * exactly LIMIT + floor(D * LIMIT / WINDOW) pass in [0, D], and one ms
 * before each retry_ms the unit is still refused (retry is exact).
 */
static void
test_gcra_long_run(void **state)
{
	static const struct {
		const char *label;
		uint64_t limit, window, span, cost;
	} cases[] = {
		{ "3 per 10 s over 10 min", 3, 10 * SEC, 600 * SEC, 1 },
		{ "3 per 10 s over 30 days", 3, 10 * SEC, 30 * DAY, 1 },
		{ "7 per minute over a year", 7, 60 * SEC, 365 * DAY, 1 },
		{ "997 per hour over a year", 997, HOUR, 365 * DAY, 1 },
		{ "1 per 3 ms over an hour", 1, 3, HOUR, 1 },
		{ "1000 per second over an hour", 1000, SEC, HOUR, 1 },
		{ "999983 per day over 3 days", 999983, DAY, 3 * DAY, 1 },
		{ "1000000 per 7 s over 70 s", 1000000, 7 * SEC, 70 * SEC, 1 },
		{ "30 per 7 s, 3 at a time, over a day", 30, 7 * SEC, DAY, 3 },
	};
	struct ag_rate_result r;
	uint64_t tat, probe, now, n, want, retry;
	size_t i;

	(void)state;
	for (i = 0; i < NELEM(cases); i++) {
		struct ag_rate_limit lim = { cases[i].limit, cases[i].window };

		tat = 0, now = 0, n = 0;
		while (now <= cases[i].span) {
			ag_gcra(&tat, &lim, cases[i].cost, now, &r);
			if (r.allowed) {
				n += cases[i].cost;
				continue;
			}
			retry = r.retry_ms;
			probe = tat;
			ag_gcra(&probe, &lim, cases[i].cost, now + retry - 1, &r);
			if (r.allowed || probe != tat) {
				fail_msg("%s: allowed before retry_ms at %llu",
				    cases[i].label, (unsigned long long)now);
			}
			now += retry;
		}
		want = (uint64_t)(((u128)cases[i].span * cases[i].limit /
		    cases[i].window + cases[i].limit) / cases[i].cost *
		    cases[i].cost);
		check_u64(cases[i].label, "admitted", n, want);
	}
}

/*
 * Random takes and releases at random times (forwards, and sometimes
 * backwards) against an exact model on rationals (the TAT kept as a
 * numerator over LIMIT, never stored in ns): same decisions, same
 * numbers, for limits up to AG_RATE_TAT_PER_MS.
 */
static void
test_gcra_model(void **state)
{
	uint64_t seed = 0x9e3779b97f4a7c15ULL, tat, now, cost, limit, window;
	u128 a, nl, base, need, cap;
	struct ag_rate_result r, want;
	char label[128];
	int run, k;

	(void)state;
	for (run = 0; run < 400; run++) {
		limit = 1 + rnd(&seed) % (run % 4 == 0 ? 1000000 : 40);
		window = 1 + rnd(&seed) % (run % 3 == 0 ? 30 * DAY : 20000);
		struct ag_rate_limit lim = { limit, window };

		tat = 0, a = 0, now = rnd(&seed) % (1ULL << 41);
		for (k = 0; k < 500; k++) {
			snprintf(label, sizeof(label), "run %d (%llu per %llu "
			    "ms) step %d", run, (unsigned long long)limit,
			    (unsigned long long)window, k);
			now += rnd(&seed) % (2 * window / limit + 2);
			now -= rnd(&seed) % 16 == 0 ? rnd(&seed) % 1000 : 0;
			cost = rnd(&seed) % 8 == 0 ? rnd(&seed) % (limit + 2) :
			    rnd(&seed) % 3;
			nl = (u128)now * limit;
			cap = (u128)(now + window) * limit;
			base = a > nl ? a : nl;
			if (rnd(&seed) % 10 == 0) {
				ag_gcra_release(&tat, &lim, cost, now);
				if (a > nl && cost > 0) {
					a = a - nl > (u128)cost * window ?
					    a - (u128)cost * window : nl;
				}
				continue;
			}
			need = base + (u128)cost * window;
			want.allowed = cost <= limit && need <= cap;
			want.retry_ms = cost > limit ? NEVER : want.allowed ?
			    0 : (uint64_t)((need - cap + limit - 1) / limit);
			if (want.allowed && cost > 0) {
				a = base = need;
			}
			want.remaining = base >= cap ? 0 :
			    (uint64_t)((cap - base) / window);
			want.reset_ms = a > nl ?
			    (uint64_t)((a - nl + limit - 1) / limit) : 0;
			ag_gcra(&tat, &lim, cost, now, &r);
			check_result(label, &r, &want);
		}
	}
}

/*
 * With the clock stepping forwards and back at random, never more than
 * LIMIT + (latest time seen - first) / T units pass in total.
 */
static void
test_gcra_bound(void **state)
{
	static const struct ag_rate_limit lims[] = {
		{ 1, 1000 }, { 3, 10000 }, { 10, 1000 }, { 1000, DAY },
		{ 7, 1 }, { 1000000, 60000 },
	};
	uint64_t seed = 42, tat, now, first, latest, n, cost, back;
	struct ag_rate_result r;
	size_t i;
	int k;

	(void)state;
	for (i = 0; i < NELEM(lims); i++) {
		tat = 0, n = 0, first = latest = now = 1000000;
		for (k = 0; k < 200000; k++) {
			if (rnd(&seed) % 4 == 0) {
				back = rnd(&seed) % (lims[i].window_ms + 1);
				now = now - first > back ? now - back : first;
			} else {
				now += rnd(&seed) % 3;
			}
			latest = now > latest ? now : latest;
			cost = 1 + rnd(&seed) % 2;
			ag_gcra(&tat, &lims[i], cost, now, &r);
			n += r.allowed ? cost : 0;
			if ((u128)n * lims[i].window_ms > (u128)lims[i].limit *
			    (lims[i].window_ms + latest - first)) {
				fail_msg("%llu per %llu ms: %llu passed by %llu",
				    (unsigned long long)lims[i].limit,
				    (unsigned long long)lims[i].window_ms,
				    (unsigned long long)n,
				    (unsigned long long)(latest - first));
			}
		}
	}
}

/* ---- the table ---------------------------------------------------------- */

/* foreach callback: count keys and remember the largest TAT. */
static int
count_cb(void *arg, const void *key, size_t keylen, uint64_t tat)
{
	uint64_t *c = arg;

	(void)key, (void)keylen;
	c[0]++;
	c[1] = tat > c[1] ? tat : c[1];
	return 0;
}

/* 100,000 keys that differ in one byte after NULs: each is its own. */
static void
test_table_many(void **state)
{
	const struct ag_rate_limit lim = { 2, HOUR };
	struct ag_rate_table *t = table(200000);
	struct ag_rate_result r;
	struct ag_rate_stats stats;
	unsigned char k[16];
	uint64_t c[2] = { 0, 0 };
	size_t len;
	uint32_t i;

	(void)state;
	for (i = 0; i < 100000; i++) {
		len = nkey(k, i);
		r = take("many: first", t, k, len, &lim, 2, 1000);
		if (!r.allowed || r.remaining != 0) {
			fail_msg("many: key %u refused or shared", i);
		}
	}
	for (i = 0; i < 100000; i++) {
		len = nkey(k, i);
		r = take("many: second", t, k, len, &lim, 1, 1000);
		if (r.allowed || r.retry_ms != HOUR / 2) {
			fail_msg("many: key %u: second take allowed", i);
		}
	}
	ag_rate_table_stats(t, &stats);
	check_u64("many", "keys", stats.keys, 100000);
	check_u64("many", "takes", stats.takes, 200000);
	check_u64("many", "refused", stats.refused, 100000);
	check_u64("many", "full", stats.full, 0);
	ag_rate_foreach(t, count_cb, c);
	check_u64("many: foreach", "keys", c[0], 100000);
	check_u64("many: foreach", "largest TAT", c[1],
	    (1000 + HOUR) * AG_RATE_TAT_PER_MS);
	check_u64("many: expire early", "dropped", ag_rate_expire(t, HOUR),
	    0);
	check_u64("many: expire", "dropped", ag_rate_expire(t, HOUR + 1000),
	    100000);
	ag_rate_table_stats(t, &stats);
	check_u64("many: after expire", "keys", stats.keys, 0);
	ag_rate_table_free(t);
}

/*
 * A table of 8: the 9th live key is allowed and counted as "full" but
 * not kept; once keys are idle they make room, live ones stay.
 */
static void
test_table_full(void **state)
{
	const struct ag_rate_limit shortw = { 1, SEC }, longw = { 1, DAY };
	struct ag_rate_table *t = table(8);
	struct ag_rate_stats stats;
	struct ag_rate_result r;
	unsigned char k[16];
	size_t len;
	uint32_t i;

	(void)state;
	for (i = 0; i < 8; i++) {
		len = nkey(k, i);
		take("fill", t, k, len, i < 4 ? &shortw : &longw, 1, 0);
	}
	len = nkey(k, 100);
	r = take("9th key", t, k, len, &shortw, 1, 0);
	if (!r.allowed) {
		fail_msg("9th key refused for lack of room");
	}
	r = take("9th key again", t, k, len, &shortw, 1, 0);
	if (!r.allowed) {
		fail_msg("9th key kept although the table was full");
	}
	r = take("9th key, limit 0", t, k, len, &(struct ag_rate_limit){ 0,
	    SEC }, 1, 0);
	if (r.allowed) {
		fail_msg("full table allowed under limit 0");
	}
	ag_rate_table_stats(t, &stats);
	check_u64("full", "keys", stats.keys, 8);
	check_u64("full", "full", stats.full, 2);
	check_u64("full", "refused", stats.refused, 1);
	check_status("restore into a full table",
	    ag_rate_restore(t, k, len, 5), AG_NOMEM);
	/* At 1 s the 4 short keys are idle: 4 new keys fit, the 5th not. */
	for (i = 200; i < 205; i++) {
		len = nkey(k, i);
		take("after idle", t, k, len, &shortw, 1, SEC);
	}
	ag_rate_table_stats(t, &stats);
	check_u64("after idle", "keys", stats.keys, 8);
	check_u64("after idle", "full", stats.full, 3);
	for (i = 4; i < 8; i++) {
		len = nkey(k, i);
		r = take("live keys kept", t, k, len, &longw, 1, SEC);
		if (r.allowed) {
			fail_msg("live key %u was dropped to make room", i);
		}
	}
	check_status("release of a key never kept",
	    ag_rate_release(t, k, nkey(k, 204), &shortw, 1, SEC),
	    AG_NOTFOUND);
	ag_rate_table_free(t);
}

/* foreach callback: stop after ARG[0] keys. */
static int
stop_cb(void *arg, const void *key, size_t keylen, uint64_t tat)
{
	uint64_t *c = arg;

	(void)key, (void)keylen, (void)tat;
	return ++c[1] >= c[0];
}

/* foreach callback: record the TAT of key 7. */
static int
find7_cb(void *arg, const void *key, size_t keylen, uint64_t tat)
{
	unsigned char k[16];

	if (keylen == nkey(k, 7) && memcmp(key, k, keylen) == 0) {
		*(uint64_t *)arg = tat;
	}
	return 0;
}

/* Expiry by time, foreach stopping early, restore from a "checkpoint". */
static void
test_table_expire_restore(void **state)
{
	const struct ag_rate_limit lim = { 10, 10 * SEC };
	struct ag_rate_table *t = table(1000), *t2 = table(1000);
	struct ag_rate_result r;
	unsigned char k[16];
	uint64_t c[2], tat = 0, now = 5000000;
	uint32_t i;

	(void)state;
	for (i = 0; i < 100; i++) {
		take("expire: fill", t, k, nkey(k, i), &lim, 1 + i % 10, now);
	}
	/* Key i is fresh again (1 + i % 10) s later. */
	check_u64("expire at +0.999 s", "dropped",
	    ag_rate_expire(t, now + 999), 0);
	check_u64("expire at +1 s", "dropped", ag_rate_expire(t, now + 1000),
	    10);
	check_u64("expire at +5.5 s", "dropped", ag_rate_expire(t, now + 5500),
	    40);
	c[0] = 7, c[1] = 0;
	ag_rate_foreach(t, stop_cb, c);
	check_u64("foreach stops", "visited", c[1], 7);
	ag_rate_foreach(t, find7_cb, &tat);
	check_u64("foreach: key 7", "TAT", tat, (now + 8000) * 1000000);
	/* Restore key 7's TAT into a new table: the same decisions follow. */
	check_status("restore", ag_rate_restore(t2, k, nkey(k, 7), tat), AG_OK);
	r = take("restored: full", t2, k, nkey(k, 7), &lim, 3, now);
	if (r.allowed || r.remaining != 2 || r.reset_ms != 8000) {
		fail_msg("restored key: allowed %d remaining %llu reset %llu",
		    r.allowed, (unsigned long long)r.remaining,
		    (unsigned long long)r.reset_ms);
	}
	check_status("restore over a key", ag_rate_restore(t2, k, nkey(k, 7),
	    0), AG_OK);
	r = take("restored fresh", t2, k, nkey(k, 7), &lim, 10, now);
	if (!r.allowed) {
		fail_msg("key restored fresh was refused");
	}
	check_u64("expire at +10 s", "dropped", ag_rate_expire(t, now + 10000),
	    50);
	/* A key given back is idle at once, though its stripe was swept. */
	take("release then expire", t, "r", 1, &lim, 4, now);
	check_u64("before release", "dropped", ag_rate_expire(t, now + 1), 0);
	check_status("release", ag_rate_release(t, "r", 1, &lim, 4, now + 1),
	    AG_OK);
	check_u64("after release", "dropped", ag_rate_expire(t, now + 1), 1);
	c[0] = c[1] = 0;
	ag_rate_foreach(t, count_cb, c);
	check_u64("after expiry", "keys", c[0], 0);
	ag_rate_foreach(NULL, count_cb, c);
	ag_rate_foreach(t, NULL, c);
	check_u64("expire NULL", "dropped", ag_rate_expire(NULL, 0), 0);
	ag_rate_table_free(t2);
	ag_rate_table_free(t);
	ag_rate_table_free(NULL);
}

/* Keys are any bytes up to AG_RATE_KEY_MAX; bad arguments are refused. */
static void
test_table_keys(void **state)
{
	const struct ag_rate_limit lim = { 1, SEC };
	static const struct {
		const char *label;
		const char *key;
		size_t len;
	} keys[] = {
		{ "empty", "", 0 },
		{ "NUL", "\0", 1 },
		{ "two NULs", "\0\0", 2 },
		{ "a", "a", 1 },
		{ "a NUL b", "a\0b", 3 },
		{ "a NUL c", "a\0c", 3 },
		{ "a NUL", "a\0", 2 },
		{ "8 bytes", "12345678", 8 },
		{ "8 bytes + NUL", "12345678\0", 9 },
	};
	struct ag_rate_table *t = table(64), *t2;
	struct ag_rate_result r;
	unsigned char big[AG_RATE_KEY_MAX + 1];
	size_t i;

	(void)state;
	for (i = 0; i < NELEM(keys); i++) {
		r = take(keys[i].label, t, keys[i].key, keys[i].len, &lim, 1, 0);
		if (!r.allowed) {
			fail_msg("%s: shares a bucket with another key",
			    keys[i].label);
		}
	}
	for (i = 0; i < NELEM(keys); i++) {
		r = take(keys[i].label, t, keys[i].key, keys[i].len, &lim, 1, 0);
		if (r.allowed) {
			fail_msg("%s: not kept", keys[i].label);
		}
	}
	memset(big, 0xff, sizeof(big));
	r = take("longest key", t, big, AG_RATE_KEY_MAX, &lim, 1, 0);
	big[AG_RATE_KEY_MAX - 1] = 0;
	r = take("longest key, last byte differs", t, big, AG_RATE_KEY_MAX,
	    &lim, 1, 0);
	if (!r.allowed) {
		fail_msg("keys differing in byte 512 share a state");
	}
	check_status("key too long", ag_rate_take(t, big, AG_RATE_KEY_MAX + 1,
	    &lim, 1, 0, &r), AG_INVALID);
	check_status("release: key too long", ag_rate_release(t, big,
	    AG_RATE_KEY_MAX + 1, &lim, 1, 0), AG_INVALID);
	check_status("restore: key too long", ag_rate_restore(t, big,
	    AG_RATE_KEY_MAX + 1, 0), AG_INVALID);
	check_status("NULL key", ag_rate_take(t, NULL, 3, &lim, 1, 0, &r),
	    AG_INVALID);
	check_status("NULL empty key", ag_rate_take(t, NULL, 0, &lim, 1, 0,
	    &r), AG_OK);
	check_status("NULL table", ag_rate_take(NULL, "a", 1, &lim, 1, 0, &r),
	    AG_INVALID);
	check_status("NULL limit", ag_rate_take(t, "a", 1, NULL, 1, 0, &r),
	    AG_INVALID);
	check_status("NULL out", ag_rate_take(t, "a", 1, &lim, 1, 0, NULL),
	    AG_INVALID);
	check_status("release: NULL limit", ag_rate_release(t, "a", 1, NULL,
	    1, 0), AG_INVALID);
	check_status("release: unknown key", ag_rate_release(t, "zz", 2, &lim,
	    1, 0), AG_NOTFOUND);
	check_status("max_keys 0", ag_rate_table_new(0, &t2), AG_INVALID);
	ag_rate_table_free(t);
}

/* foreach callback: append the number in each key to ARG[1..]. */
static int
order_cb(void *arg, const void *key, size_t keylen, uint64_t tat)
{
	uint32_t *o = arg;

	(void)keylen, (void)tat;
	memcpy(&o[1 + o[0]++], (const unsigned char *)key + 6,
	    sizeof(uint32_t));
	return 0;
}

/*
 * Two tables hash the same keys differently (a secret per table), so
 * their foreach orders differ: a sender cannot aim at one chain.
 */
static void
test_table_keyed_hash(void **state)
{
	const struct ag_rate_limit lim = { 1, SEC };
	struct ag_rate_table *a = table(100), *b = table(100);
	uint32_t oa[65] = { 0 }, ob[65] = { 0 }, i;
	unsigned char k[16];

	(void)state;
	for (i = 0; i < 64; i++) {
		take("keyed: a", a, k, nkey(k, i), &lim, 1, 0);
		take("keyed: b", b, k, nkey(k, i), &lim, 1, 0);
	}
	ag_rate_foreach(a, order_cb, oa);
	ag_rate_foreach(b, order_cb, ob);
	check_u64("keyed", "keys in a", oa[0], 64);
	if (memcmp(oa, ob, sizeof(oa)) == 0) {
		fail_msg("two tables order 64 keys alike: hash not keyed");
	}
	ag_rate_table_free(a);
	ag_rate_table_free(b);
}

/* Fail allocation 0, 1, 2 ... of each call until one succeeds. */
static void
test_table_alloc_failure(void **state)
{
	const struct ag_rate_limit lim = { 1, SEC };
	struct ag_rate_table *t = NULL;
	struct ag_rate_result r;
	struct ag_rate_stats stats;
	ag_status st = AG_NOMEM;
	long n, fails[3] = { 0 };

	(void)state;
	for (n = 0; t == NULL; n++) {
		alloc_countdown = n;
		st = ag_rate_table_new(10, &t);
		alloc_countdown = -1;
		fails[0] += st == AG_NOMEM;
	}
	check_status("new", st, AG_OK);
	for (st = AG_NOMEM, n = 0; st == AG_NOMEM; n++) {
		alloc_countdown = n;
		st = ag_rate_take(t, "k1", 2, &lim, 1, 0, &r);
		alloc_countdown = -1;
		if (st == AG_NOMEM && r.allowed) {
			fail_msg("take failed for memory but allowed");
		}
		fails[1] += st == AG_NOMEM;
	}
	check_status("take", st, AG_OK);
	r = take("take kept", t, "k1", 2, &lim, 1, 0);
	if (r.allowed) {
		fail_msg("key not kept after allocation failures");
	}
	for (st = AG_NOMEM, n = 0; st == AG_NOMEM; n++) {
		alloc_countdown = n;
		st = ag_rate_restore(t, "k2", 2, 1);
		alloc_countdown = -1;
		fails[2] += st == AG_NOMEM;
	}
	ag_rate_table_stats(t, &stats);
	check_u64("after failures", "keys", stats.keys, 2);
	ag_rate_table_free(t);
	if (fails[0] < 1 || fails[1] < 2 || fails[2] < 1) {
		fail_msg("allocation failures seen: new %ld, take %ld, restore "
		    "%ld", fails[0], fails[1], fails[2]);
	}
}

/* ---- threads ------------------------------------------------------------ */

#define ONE_KEY_THREADS 200
#define ONE_KEY_TAKES 50
#define ONE_KEY_LIMIT 1000

struct worker {
	struct ag_rate_table *t;
	pthread_barrier_t *go;
	unsigned id;
	uint64_t allowed, released, errors;
};

/* 50 takes on one key; every third success is given back at once. */
static void *
one_key_worker(void *arg)
{
	const struct ag_rate_limit lim = { ONE_KEY_LIMIT, DAY };
	struct worker *w = arg;
	struct ag_rate_result r;
	int i;

	pthread_barrier_wait(w->go);
	for (i = 0; i < ONE_KEY_TAKES; i++) {
		if (ag_rate_take(w->t, "pool", 4, &lim, 1, 7000, &r) != AG_OK) {
			w->errors++;
		}
		w->allowed += r.allowed;
		if (r.allowed && w->allowed % 3 == 0 && w->id % 2 == 0) {
			w->errors += ag_rate_release(w->t, "pool", 4, &lim, 1,
			    7000) != AG_OK;
			w->released++;
		}
	}
	return NULL;
}

/* Run N workers with START, WORKERS already set up. */
static void
run_workers(struct worker *w, unsigned n, void *(*start)(void *))
{
	pthread_barrier_t go;
	pthread_t *th = calloc(n, sizeof(*th));
	unsigned i;

	if (th == NULL || pthread_barrier_init(&go, NULL, n) != 0) {
		fail_msg("cannot set up %u threads", n);
	}
	for (i = 0; i < n; i++) {
		w[i].go = &go;
		w[i].id = i;
		if (pthread_create(&th[i], NULL, start, &w[i]) != 0) {
			fail_msg("pthread_create %u failed", i);
		}
	}
	for (i = 0; i < n; i++) {
		pthread_join(th[i], NULL);
	}
	pthread_barrier_destroy(&go);
	free(th);
}

/* Take and give back 1 on one key 400 times: the key ends fresh. */
static void *
pairs_worker(void *arg)
{
	const struct ag_rate_limit lim = { 1000000, DAY };
	struct worker *w = arg;
	struct ag_rate_result r;
	int i;

	pthread_barrier_wait(w->go);
	for (i = 0; i < 400; i++) {
		w->errors += ag_rate_take(w->t, "p", 1, &lim, 1 + w->id % 3, 9,
		    &r) != AG_OK || !r.allowed;
		w->errors += ag_rate_release(w->t, "p", 1, &lim, 1 + w->id % 3,
		    9) != AG_OK;
	}
	return NULL;
}

/* 200 threads on one key with limit 1000: exactly 1000 pass, net. */
static void
test_threads_one_key(void **state)
{
	const struct ag_rate_limit lim = { ONE_KEY_LIMIT, DAY };
	struct worker w[ONE_KEY_THREADS] = { { 0 } };
	struct ag_rate_table *t = table(10);
	struct ag_rate_result r;
	struct ag_rate_stats stats;
	uint64_t allowed = 0, released = 0, errors = 0;
	unsigned i;

	(void)state;
	for (i = 0; i < ONE_KEY_THREADS; i++) {
		w[i].t = t;
	}
	run_workers(w, ONE_KEY_THREADS, one_key_worker);
	for (i = 0; i < ONE_KEY_THREADS; i++) {
		allowed += w[i].allowed, released += w[i].released;
		errors += w[i].errors;
	}
	check_u64("one key", "errors", errors, 0);
	check_u64("one key", "net admitted", allowed - released, ONE_KEY_LIMIT);
	r = take("one key: after", t, "pool", 4, &lim, 0, 7000);
	check_u64("one key: after", "remaining", r.remaining, 0);
	ag_rate_table_stats(t, &stats);
	check_u64("one key", "takes", stats.takes,
	    ONE_KEY_THREADS * ONE_KEY_TAKES + 1);
	check_u64("one key", "refused", stats.refused,
	    ONE_KEY_THREADS * ONE_KEY_TAKES - allowed);
	/* No update lost: after balanced takes and releases, still full. */
	take("pairs: seed", t, "p", 1, &(struct ag_rate_limit){ 1000000,
	    DAY }, 300000, 9);
	run_workers(w, ONE_KEY_THREADS, pairs_worker);
	for (i = 0, errors = 0; i < ONE_KEY_THREADS; i++) {
		errors += w[i].errors;
	}
	check_u64("pairs", "errors", errors, 0);
	r = take("pairs: after", t, "p", 1, &(struct ag_rate_limit){ 1000000,
	    DAY }, 0, 9);
	check_u64("pairs: after", "remaining", r.remaining, 700000);
	ag_rate_table_free(t);
}

#define OWN_THREADS 16
#define OWN_KEYS 2000
#define OWN_LIMIT 5

/* Thread ID's own keys, 8 takes each at one time, then 1 s later. */
static void *
own_keys_worker(void *arg)
{
	const struct ag_rate_limit lim = { OWN_LIMIT, 5 * SEC };
	struct worker *w = arg;
	struct ag_rate_result r;
	unsigned char k[16];
	uint32_t i;
	int j;

	pthread_barrier_wait(w->go);
	for (j = 0; j < 9; j++) {
		for (i = 0; i < OWN_KEYS; i++) {
			if (ag_rate_take(w->t, k, nkey(k, w->id * OWN_KEYS + i),
			    &lim, 1, j < 8 ? 0 : SEC, &r) != AG_OK) {
				w->errors++;
			}
			w->allowed += r.allowed;
		}
	}
	return NULL;
}

/* 16 threads on distinct keys: each key admits exactly its limit. */
static void
test_threads_own_keys(void **state)
{
	struct worker w[OWN_THREADS] = { { 0 } };
	struct ag_rate_table *t = table(OWN_THREADS * OWN_KEYS);
	struct ag_rate_stats stats;
	unsigned i;

	(void)state;
	for (i = 0; i < OWN_THREADS; i++) {
		w[i].t = t;
	}
	run_workers(w, OWN_THREADS, own_keys_worker);
	for (i = 0; i < OWN_THREADS; i++) {
		check_u64("own keys", "errors", w[i].errors, 0);
		check_u64("own keys", "admitted", w[i].allowed,
		    OWN_KEYS * (OWN_LIMIT + 1));
	}
	ag_rate_table_stats(t, &stats);
	check_u64("own keys", "keys", stats.keys, OWN_THREADS * OWN_KEYS);
	check_u64("own keys", "full", stats.full, 0);
	ag_rate_table_free(t);
}

/* New keys at a moving clock into a small table: eviction races. */
static void *
churn_worker(void *arg)
{
	const struct ag_rate_limit lim = { 1, 50 };
	struct worker *w = arg;
	struct ag_rate_result r;
	unsigned char k[16];
	uint32_t i;

	pthread_barrier_wait(w->go);
	for (i = 0; i < 20000; i++) {
		if (ag_rate_take(w->t, k, nkey(k, w->id << 20 | i), &lim, 1,
		    i, &r) != AG_OK || !r.allowed) {
			w->errors++;
		}
		if (i % 1000 == 0) {
			(void)ag_rate_expire(w->t, i);
		}
	}
	return NULL;
}

static void
test_threads_churn(void **state)
{
	struct worker w[8] = { { 0 } };
	struct ag_rate_table *t = table(300);
	struct ag_rate_stats stats;
	unsigned i;

	(void)state;
	for (i = 0; i < NELEM(w); i++) {
		w[i].t = t;
	}
	run_workers(w, NELEM(w), churn_worker);
	for (i = 0; i < NELEM(w); i++) {
		check_u64("churn", "errors or refusals", w[i].errors, 0);
	}
	ag_rate_table_stats(t, &stats);
	if (stats.keys > 300) {
		fail_msg("churn: %zu keys in a table of 300", stats.keys);
	}
	check_u64("churn", "takes", stats.takes, NELEM(w) * 20000);
	ag_rate_table_free(t);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_gcra_scripts),
		cmocka_unit_test(test_gcra_long_run),
		cmocka_unit_test(test_gcra_model),
		cmocka_unit_test(test_gcra_bound),
		cmocka_unit_test(test_table_many),
		cmocka_unit_test(test_table_full),
		cmocka_unit_test(test_table_expire_restore),
		cmocka_unit_test(test_table_keys),
		cmocka_unit_test(test_table_keyed_hash),
		cmocka_unit_test(test_table_alloc_failure),
		cmocka_unit_test(test_threads_one_key),
		cmocka_unit_test(test_threads_own_keys),
		cmocka_unit_test(test_threads_churn),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * t_rate.c - the daemon's rate engine (lib/rate.c) with an injected
 * clock: local decisions and release, 200 threads on one counter, a full
 * table (admitted, counted in the metric, logged once per episode), the
 * fallbacks when Redis cannot be reached (logged once per outage), the
 * counters listing (text and JSON, filters, counters of deleted rules),
 * reset, and the checkpoint through a real SQLite store.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <unistd.h>

#include "config.h"
#include "log.h"
#include "metrics.h"
#include "rate.h"
#include "store.h"

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))
#define HOUR_MS 3600000ULL

static uint64_t now_ms = 1800000000000ULL;

static uint64_t
clock_fn(void *arg)
{
	(void)arg;
	return now_ms;
}

static struct ag_rater *
rater(void)
{
	struct ag_rater *r = NULL;

	assert_int_equal(ag_rater_new(10000, &r), AG_OK);
	ag_rater_set_clock(r, clock_fn, NULL);
	return r;
}

static struct ag_config *
config(const char *text)
{
	struct ag_config *c = NULL;
	char err[256];

	if (ag_config_load_string(text, "t.conf", &c, err, sizeof(err)) !=
	    AG_OK) {
		fail_msg("config: %s", err);
	}
	return c;
}

/* Take COST on KEY under LIMIT per hour; returns the decision. */
static bool
take(struct ag_rater *r, const char *key, uint64_t limit, uint64_t cost,
    enum ag_rate_where *where)
{
	struct ag_rate_limit lim = { limit, HOUR_MS };
	struct ag_rate_result res;
	enum ag_rate_where w;

	assert_int_equal(ag_rater_take(r, key, strlen(key), &lim, cost, &res,
	    where != NULL ? where : &w), AG_OK);
	return res.allowed;
}

static void
test_local(void **state)
{
	struct ag_rate_limit lim = { 3, HOUR_MS };
	struct ag_rater *r = rater();
	enum ag_rate_where w;
	int i;

	(void)state;
	for (i = 0; i < 3; i++) {
		assert_true(take(r, "1.1:pool", 3, 1, &w));
		assert_int_equal(w, AG_RW_LOCAL);
	}
	assert_false(take(r, "1.1:pool", 3, 1, NULL));
	ag_rater_release(r, "1.1:pool", 8, &lim, 1, AG_RW_LOCAL);
	assert_true(take(r, "1.1:pool", 3, 1, NULL));
	/* nothing counted elsewhere is given back here */
	ag_rater_release(r, "1.1:pool", 8, &lim, 1, AG_RW_NONE);
	assert_false(take(r, "1.1:pool", 3, 1, NULL));
	now_ms += HOUR_MS / 3;
	assert_true(take(r, "1.1:pool", 3, 1, NULL));
	ag_rater_free(r);
}

/* ---- threads ------------------------------------------------------------ */

struct worker {
	struct ag_rater *r;
	pthread_barrier_t *go;
	int allowed;
};

static void *
worker_main(void *arg)
{
	struct worker *w = arg;
	struct ag_rate_limit lim = { 57, HOUR_MS };
	struct ag_rate_result res;
	enum ag_rate_where where;

	pthread_barrier_wait(w->go);
	for (int i = 0; i < 3; i++) {
		if (ag_rater_take(w->r, "9.1:pool", 8, &lim, 1, &res,
		    &where) == AG_OK && res.allowed) {
			w->allowed++;
		}
	}
	return NULL;
}

static void
test_threads(void **state)
{
	enum { N = 200 };
	struct worker w[N];
	pthread_t th[N];
	pthread_barrier_t go;
	struct ag_rater *r = rater();
	int i, total = 0;

	(void)state;
	assert_int_equal(pthread_barrier_init(&go, NULL, N), 0);
	for (i = 0; i < N; i++) {
		w[i] = (struct worker){ r, &go, 0 };
		assert_int_equal(pthread_create(&th[i], NULL, worker_main, &w[i]),
		    0);
	}
	for (i = 0; i < N; i++) {
		pthread_join(th[i], NULL);
		total += w[i].allowed;
	}
	pthread_barrier_destroy(&go);
	assert_int_equal(total, 57);
	ag_rater_free(r);
}

/* ---- Redis unreachable ---------------------------------------------------- */

/* Run FN with stderr (the log) in a file; returns how often NEEDLE is in
 * what was logged. */
static int
logged(void (*fn)(void *), void *arg, const char *needle)
{
	char path[] = "/tmp/t_rate.log.XXXXXX", buf[16384];
	int fd = mkstemp(path), saved = dup(2), n = 0;
	ssize_t len;
	const char *p;

	assert_true(fd >= 0 && saved >= 0);
	fflush(stderr);
	dup2(fd, 2);
	fn(arg);
	fflush(stderr);
	dup2(saved, 2);
	close(saved);
	len = pread(fd, buf, sizeof(buf) - 1, 0);
	close(fd);
	unlink(path);
	buf[len > 0 ? len : 0] = '\0';
	for (p = buf; (p = strstr(p, needle)) != NULL; p++) {
		n++;
	}
	return n;
}

struct outage {
	struct ag_rater *r;
	ag_status st;
	enum ag_rate_where where;
	bool allowed;
};

static void
five_takes(void *arg)
{
	struct outage *o = arg;
	struct ag_rate_limit lim = { 2, HOUR_MS };
	struct ag_rate_result res;

	for (int i = 0; i < 5; i++) {
		o->st = ag_rater_take(o->r, "1.1:pool", 8, &lim, 1, &res,
		    &o->where);
		o->allowed = res.allowed;
	}
}

static void
test_fallback(void **state)
{
	static const struct {
		const char *mode;
		ag_status st;
		enum ag_rate_where where;
		bool allowed;	/* the fifth take */
		const char *says;
	} cases[] = {
		{ "local", AG_OK, AG_RW_LOCAL, false, "counting locally" },
		{ "tempfail", AG_TEMPFAIL, AG_RW_NONE, true,
		    "answering 451 4.3.0" },
		{ "accept", AG_OK, AG_RW_NONE, true, "not counting" },
	};
	char text[256];
	size_t i;

	(void)state;
	ag_log_open("t_rate", LOG_LOCAL7, 1);
	for (i = 0; i < NELEM(cases); i++) {
		struct outage o = { rater(), AG_OK, AG_RW_REDIS, false };
		struct ag_config *c;

		/* port 1 on loopback: refused at once */
		snprintf(text, sizeof(text), "RateBackend redis://127.0.0.1:1\n"
		    "RateBackendTimeout 200\nOn-RateBackendError %s\n",
		    cases[i].mode);
		c = config(text);
		ag_rater_configure(o.r, c);
		if (logged(five_takes, &o, "unavailable") != 1) {
			fail_msg("%s: the outage is not logged exactly once",
			    cases[i].mode);
		}
		assert_int_equal(o.st, cases[i].st);
		assert_int_equal(o.where, cases[i].where);
		assert_int_equal(o.allowed, cases[i].allowed);
		assert_int_equal(logged(five_takes, &o, cases[i].says), 0);
		/* back to local: no outage any more */
		ag_config_unref(c);
		c = config("RateBackend local\n");
		ag_rater_configure(o.r, c);
		ag_config_unref(c);
		ag_rater_free(o.r);
	}
	(void)cases[0].says;
}

/* ---- a full local table ------------------------------------------------ */

struct fill {
	struct ag_rater *r;
	int from, to;		/* keys N.1:pool for N in [from, to) */
	int allowed, uncounted;	/* how many were allowed, and uncounted */
};

static void
fill_keys(void *arg)
{
	struct fill *f = arg;
	char key[32];
	enum ag_rate_where w;

	for (int i = f->from; i < f->to; i++) {
		snprintf(key, sizeof(key), "%d.1:pool", i);
		if (take(f->r, key, 1, 1, &w)) {
			f->allowed++;
			f->uncounted += w == AG_RW_NONE;
		}
	}
}

static void
expire(void *arg)
{
	ag_rater_expire(arg);
}

/* authgate_rate_table_full_total as rendered now. */
static double
table_full_metric(void)
{
	const char *name = "\nauthgate_rate_table_full_total ";
	size_t len;
	char *t = ag_metrics_text(&len), *p;
	double v;

	assert_non_null(t);
	p = strstr(t, name);
	if (p == NULL) {
		fail_msg("no authgate_rate_table_full_total in:\n%s", t);
	}
	v = strtod(p + strlen(name), NULL);
	free(t);
	return v;
}

/*
 * 1000 live keys fill a table of 1000; the 1001st and 499 more are
 * admitted uncounted, each in the metric, with one log line for all; the
 * keys held are still limited.  Once they expire the watcher logs "room
 * again" once, a new key is counted, and the next full episode is logged
 * again.
 */
static void
test_table_full(void **state)
{
	struct ag_rater *r = NULL;
	struct fill f = { NULL, 0, 1000, 0, 0 };

	(void)state;
	ag_log_open("t_rate", LOG_LOCAL7, 1);
	ag_metrics_reset();
	assert_int_equal(ag_rater_new(1000, &r), AG_OK);
	ag_rater_set_clock(r, clock_fn, NULL);
	f.r = r;
	assert_int_equal(logged(fill_keys, &f, "table of counters"), 0);
	assert_int_equal(f.allowed, 1000);
	assert_int_equal(f.uncounted, 0);
	assert_true(table_full_metric() == 0);

	f = (struct fill){ r, 1000, 1500, 0, 0 };
	now_ms += 1000;		/* the 1000 keys are still live */
	if (logged(fill_keys, &f, "rate limits: the table of counters is "
	    "full (RateMaxKeys 1000): new keys are not limited until idle "
	    "ones expire") != 1) {
		fail_msg("a full table is not logged exactly once");
	}
	assert_int_equal(f.allowed, 500);
	assert_int_equal(f.uncounted, 500);
	if (table_full_metric() != 500) {
		fail_msg("authgate_rate_table_full_total %f, want 500",
		    table_full_metric());
	}
	/* a held key is still limited; an uncounted one was not kept */
	assert_false(take(r, "7.1:pool", 1, 1, NULL));
	assert_true(take(r, "1200.1:pool", 1, 1, NULL));
	assert_int_equal(logged(expire, r, "room"), 0);	/* all still live */

	now_ms += HOUR_MS;
	if (logged(expire, r, "rate limits: the table of counters has room "
	    "again after 3600 s; 501 new keys were not limited") != 1) {
		fail_msg("room again is not logged once");
	}
	assert_int_equal(logged(expire, r, "room"), 0);
	f = (struct fill){ r, 2000, 3000, 0, 0 };
	assert_int_equal(logged(fill_keys, &f, "table of counters"), 0);
	assert_int_equal(f.uncounted, 0);
	f = (struct fill){ r, 3000, 3010, 0, 0 };
	assert_int_equal(logged(fill_keys, &f, "is full (RateMaxKeys"), 1);
	assert_int_equal(f.uncounted, 10);
	assert_true(table_full_metric() == 511);
	ag_rater_free(r);
}

/* ---- listing and reset ----------------------------------------------------- */

/* A policy of rule 7 with two limits; rule 8 does not exist. */
static struct ag_policy *
policy(void)
{
	struct ag_rule *rules = calloc(1, sizeof(*rules));
	struct ag_policy *p = NULL;
	char err[128];

	assert_non_null(rules);
	ag_rule_init(&rules[0]);
	rules[0].id = 7;
	assert_int_equal(ag_rate_spec_parse("messages:10/1h:sender",
	    &rules[0].rate[0], err, sizeof(err)), AG_OK);
	assert_int_equal(ag_rate_spec_parse("bytes:1M/1h", &rules[0].rate[1],
	    err, sizeof(err)), AG_OK);
	rules[0].nrate = 2;
	assert_int_equal(ag_policy_new(rules, 1, &p), AG_OK);
	return p;
}

/* The listing as a string (to be freed). */
static char *
list(struct ag_rater *r, const struct ag_policy *p, int64_t rule,
    const char *key, bool json)
{
	char *text = NULL, err[256];
	size_t len = 0;
	FILE *fp = open_memstream(&text, &len);

	assert_non_null(fp);
	assert_int_equal(ag_rater_list(r, p, rule, key, json, fp, err,
	    sizeof(err)), AG_OK);
	fclose(fp);
	return text;
}

static void
expect_in(const char *label, const char *text, const char *part, bool yes)
{
	if ((strstr(text, part) != NULL) != yes) {
		fail_msg("%s: '%s' %s in:\n%s", label, part,
		    yes ? "missing" : "present", text);
	}
}

static void
test_list_reset(void **state)
{
	struct ag_rater *r = rater();
	struct ag_policy *p = policy();
	size_t n;
	char err[256], *t;
	int i;

	(void)state;
	for (i = 0; i < 4; i++) {
		take(r, "7.1:sender=a@example.com", 10, 1, NULL);
	}
	take(r, "7.1:sender=b@example.com", 10, 1, NULL);
	take(r, "7.2:pool", 1 << 20, 300 * 1024, NULL);
	take(r, "8.1:helo=gone.example", 5, 1, NULL);
	take(r, "7.1:sender=\"q\\\x01\"@example.com", 10, 1, NULL);

	t = list(r, p, 0, NULL, true);
	expect_in("json", t, "{\"key\": \"7.1:sender=a@example.com\", "
	    "\"backend\": \"local\", \"rule\": 7, \"rate\": "
	    "\"messages:10/1h:sender\", \"measure\": \"messages\", "
	    "\"limit\": 10, \"window_seconds\": 3600, \"used\": 4, "
	    "\"remaining\": 6, \"reset_seconds\": 1440}", true);
	expect_in("json bytes", t, "\"used\": 307200, \"remaining\": 741376",
	    true);
	expect_in("json orphan", t, "\"key\": \"8.1:helo=gone.example\", "
	    "\"backend\": \"local\", \"rule\": 8, \"rate\": null", true);
	expect_in("json escapes", t, "\\\"q\\\\\\u0001\\\"@", true);
	free(t);

	t = list(r, p, 0, NULL, false);
	expect_in("text header", t, "KEY", true);
	expect_in("text row", t, "7.1:sender=a@example.com", true);
	expect_in("text escapes", t, "\\x01", true);
	free(t);

	t = list(r, p, 8, NULL, false);
	expect_in("--rule 8", t, "8.1:helo", true);
	expect_in("--rule 8", t, "7.1:", false);
	free(t);
	for (i = 0; i < 3; i++) {
		static const char *const sel[] = { "7.1:sender=b@example.com",
		    "sender=b@example.com", "b@example.com" };

		t = list(r, p, 0, sel[i], true);
		expect_in(sel[i], t, "b@example.com", true);
		expect_in(sel[i], t, "a@example.com", false);
		free(t);
	}
	t = list(r, p, 0, "example.com", true);
	assert_string_equal(t, "[]\n");
	free(t);

	assert_int_equal(ag_rater_reset(r, "sender=a@example.com", &n, err,
	    sizeof(err)), AG_OK);
	assert_int_equal(n, 1);
	t = list(r, p, 0, "a@example.com", false);
	expect_in("after reset", t, "a@example.com", false);
	free(t);
	assert_true(take(r, "7.1:sender=a@example.com", 10, 10, NULL));
	assert_int_equal(ag_rater_reset(r, "nothing", &n, err, sizeof(err)),
	    AG_OK);
	assert_int_equal(n, 0);

	/* fresh counters are not listed */
	now_ms += 2 * 86400000ULL;
	t = list(r, p, 0, NULL, true);
	assert_string_equal(t, "[]\n");
	free(t);
	ag_policy_free(p);
	ag_rater_free(r);
}

/* ---- checkpoint -------------------------------------------------------------- */

static void
test_checkpoint(void **state)
{
	char dir[] = "/tmp/t_rate.XXXXXX", path[128];
	struct ag_rater *r = rater(), *r2;
	struct ag_policy *p = policy();
	struct ag_store *s = NULL;
	char *t;

	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/ag.db", dir);
	assert_int_equal(ag_store_open(path, AG_STORE_CREATE, 1000, &s), AG_OK);
	take(r, "7.1:sender=a@example.com", 10, 3, NULL);
	take(r, "7.1:sender=b@example.com", 10, 1, NULL);
	assert_int_equal(ag_rater_checkpoint(r, s, "me"), AG_OK);
	ag_rater_free(r);

	r2 = rater();
	now_ms += 1000;
	assert_int_equal(ag_rater_restore(r2, s, "me"), AG_OK);
	t = list(r2, p, 0, "a@example.com", true);
	expect_in("restored", t, "\"used\": 3", true);
	free(t);
	/* an hour later both are fresh: nothing restored, nothing saved */
	now_ms += HOUR_MS;
	assert_int_equal(ag_rater_checkpoint(r2, s, "me"), AG_OK);
	ag_rater_free(r2);
	r2 = rater();
	assert_int_equal(ag_rater_restore(r2, s, "me"), AG_OK);
	t = list(r2, p, 0, NULL, true);
	assert_string_equal(t, "[]\n");
	free(t);
	ag_rater_free(r2);
	ag_store_close(s);
	ag_policy_free(p);
	unlink(path);
	rmdir(dir);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_local),
		cmocka_unit_test(test_threads),
		cmocka_unit_test(test_table_full),
		cmocka_unit_test(test_fallback),
		cmocka_unit_test(test_list_reset),
		cmocka_unit_test(test_checkpoint),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * policybench.c - how policy evaluation scales with the number of rules:
 * the linear scan (ag_policy_eval_linear, ag_policy_rates_linear) and the
 * index (ag_policy_eval, ag_policy_rates) side by side in one run, for
 * 10 to 100,000 rules; the snapshot's build time and memory; and the
 * time the store takes to load 100,000 rules from SQLite.
 *
 * One "message" is what lib/session*.c does for MAIL FROM and one RCPT
 * TO: ag_policy_eval and ag_policy_rates without a recipient, then both
 * again with it.  Not part of make check; see tests/bench/README.md.
 *
 * Usage: policybench [SECONDS] [--no-store]  (SECONDS per run, 0.4)
 */
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "addr.h"
#include "policy.h"
#include "policy_index.h"
#include "store.h"

#define NFACTS 1024		/* distinct messages, cycled */
#define ROUNDS 3		/* alternating runs of each mode; median */
#define RATES_MAX 16

static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Bytes the heap has handed out and not taken back. */
static long
heap_kb(void)
{
	struct mallinfo2 mi = mallinfo2();

	return (long)((mi.uordblks + mi.hblkhd) / 1024);
}

/* VmRSS of this process in kB. */
static long
rss_kb(void)
{
	char line[256];
	long kb = -1;
	FILE *f = fopen("/proc/self/status", "r");

	if (f == NULL) {
		return -1;
	}
	while (fgets(line, sizeof(line), f) != NULL) {
		if (strncmp(line, "VmRSS:", 6) == 0) {
			kb = strtol(line + 6, NULL, 10);
		}
	}
	fclose(f);
	return kb;
}

static void *
xcalloc(size_t n, size_t sz)
{
	void *p = calloc(n ? n : 1, sz);

	if (p == NULL) {
		fprintf(stderr, "out of memory\n");
		exit(1);
	}
	return p;
}

static void
add_match(struct ag_rule *r, enum ag_field f, const char *value)
{
	r->match = realloc(r->match, (r->nmatch + 1) * sizeof(*r->match));
	if (r->match == NULL) {
		fprintf(stderr, "out of memory\n");
		exit(1);
	}
	memset(&r->match[r->nmatch], 0, sizeof(*r->match));
	r->match[r->nmatch].field = f;
	r->match[r->nmatch].value = strdup(value);
	r->nmatch++;
}

static void
add_rate(struct ag_rule *r, const char *spec)
{
	char err[128];

	if (ag_rate_spec_parse(spec, &r->rate[r->nrate], err, sizeof(err)) !=
	    AG_OK) {
		fprintf(stderr, "%s: %s\n", spec, err);
		exit(1);
	}
	r->nrate++;
}

/* ---- the rule set ---------------------------------------------------------- */

/*
 * Rule I of a set of N as (field, value, settings), shared by the
 * in-memory rules and the SQLite rows.  The first four are the defaults
 * a site has; then, out of ten: six per client network (IPv4 /24, some
 * IPv6 /48, a few /16 and /32), three per sender domain (exact or
 * ".suffix"), one per SASL user or recipient domain.
 */
struct rdesc {
	int priority;
	const char *field;	/* NULL: no condition */
	char value[96];
	long max_size;		/* -1 unset */
	const char *rate;	/* NULL or a spec */
	bool exempt;
};

static void
describe(size_t i, struct rdesc *d)
{
	size_t k = i - 4;

	memset(d, 0, sizeof(*d));
	d->priority = 100;
	d->max_size = -1;
	switch (i) {
	case 0:
		d->priority = 1000;
		d->max_size = 50L << 20;
		return;
	case 1:
		d->priority = 1000;
		d->rate = "messages:600/1h:client-ip";
		return;
	case 2:
		d->priority = 10;
		d->field = "trusted";
		snprintf(d->value, sizeof(d->value), "yes");
		d->exempt = true;
		return;
	case 3:
		d->priority = 20;
		d->field = "authenticated";
		snprintf(d->value, sizeof(d->value), "yes");
		d->rate = "recipients:2000/1d:sasl-user";
		return;
	default:
		break;
	}
	d->max_size = (long)(1 + k % 50) << 20;
	if (k % 5 == 0) {
		d->rate = "messages:100/1h";
	}
	switch (k % 10) {
	case 0: case 1: case 2: case 3: case 4:
		d->field = "client";
		if (k % 97 == 0) {
			snprintf(d->value, sizeof(d->value), "2001:db8:%zx::/48",
			    k & 0xffff);
		} else if (k % 89 == 0) {
			snprintf(d->value, sizeof(d->value), "%zu.%zu.0.0/16",
			    20 + (k >> 8) % 200, k & 255);
		} else if (k % 83 == 0) {
			snprintf(d->value, sizeof(d->value), "192.0.2.%zu",
			    k & 255);
		} else {
			snprintf(d->value, sizeof(d->value), "%zu.%zu.%zu.0/24",
			    10 + (k >> 16), (k >> 8) & 255, k & 255);
		}
		return;
	case 5:
		d->field = "client";
		snprintf(d->value, sizeof(d->value), "%zu.%zu.%zu.0/24",
		    10 + (k >> 16), (k >> 8) & 255, k & 255);
		return;
	case 6: case 7:
		d->field = "sender-domain";
		snprintf(d->value, sizeof(d->value), "cust%zu.example.com", k);
		return;
	case 8:
		d->field = "sender-domain";
		snprintf(d->value, sizeof(d->value), ".cust%zu.example.net", k);
		return;
	default:
		d->field = k % 20 == 9 ? "sasl-user" : "rcpt-domain";
		snprintf(d->value, sizeof(d->value), k % 20 == 9 ? "user%zu" :
		    "dest%zu.example.org", k);
		return;
	}
}

static struct ag_rule *
make_rules(size_t n)
{
	struct ag_rule *rules = xcalloc(n, sizeof(*rules));
	struct rdesc d;
	enum ag_field f;
	size_t i;

	for (i = 0; i < n; i++) {
		describe(i, &d);
		ag_rule_init(&rules[i]);
		rules[i].id = (int64_t)i + 1;
		rules[i].priority = d.priority;
		rules[i].max_size = d.max_size;
		rules[i].exempt = d.exempt;
		if (d.field != NULL) {
			(void)ag_field_parse(d.field, &f);
			add_match(&rules[i], f, d.value);
		}
		if (d.rate != NULL) {
			add_rate(&rules[i], d.rate);
		}
	}
	return rules;
}

static struct ag_policy *
make_policy(size_t n, double *build_s)
{
	struct ag_rule *rules = make_rules(n);
	struct ag_policy *p = NULL;
	double t0 = now_s();

	if (ag_policy_new(rules, n, &p) != AG_OK) {
		fprintf(stderr, "ag_policy_new failed\n");
		exit(1);
	}
	if (build_s != NULL) {
		*build_s = now_s() - t0;
	}
	return p;
}

/* ---- the messages ------------------------------------------------------------ */

struct msg {
	struct ag_ip ip;
	char helo[64];
	char sasl[32];
	struct ag_mailaddr sender, rcpt;
	struct ag_facts f;
};

static uint64_t rng = 0x9e3779b97f4a7c15ULL;

static uint64_t
rnd(void)
{
	rng ^= rng >> 12;
	rng ^= rng << 25;
	rng ^= rng >> 27;
	return rng * 0x2545f4914f6cdd1dULL;
}

/*
 * Half the clients are in a customer network of the set, half are not;
 * 40% of senders are a customer domain; 10% authenticate.  The rule set
 * decides which rules exist; the facts only name them.
 */
static void
make_msgs(struct msg *m, size_t nm, size_t nrules)
{
	char buf[128];
	size_t i, k, span = nrules > 4 ? nrules - 4 : 1;

	for (i = 0; i < nm; i++) {
		memset(&m[i], 0, sizeof(m[i]));
		k = rnd() % span;
		if (rnd() % 2) {
			snprintf(buf, sizeof(buf), "%zu.%zu.%zu.%u",
			    10 + (k >> 16), (k >> 8) & 255, k & 255,
			    (unsigned)(1 + rnd() % 254));
		} else {
			snprintf(buf, sizeof(buf), "198.51.100.%u",
			    (unsigned)(rnd() % 256));
		}
		(void)ag_ip_parse(buf, &m[i].ip);
		m[i].f.client = &m[i].ip;
		snprintf(m[i].helo, sizeof(m[i].helo), "mail%zu.example.net", k);
		m[i].f.helo = m[i].helo;
		k = rnd() % span;
		if (rnd() % 10 < 4) {
			snprintf(buf, sizeof(buf), k % 10 == 8 ?
			    "<someone@mx.cust%zu.example.net>" :
			    "<someone@cust%zu.example.com>", k);
		} else {
			snprintf(buf, sizeof(buf), "<someone@other%zu.example.org>",
			    k);
		}
		(void)ag_mailaddr_parse(buf, &m[i].sender);
		m[i].f.sender = &m[i].sender;
		if (rnd() % 10 == 0) {
			snprintf(m[i].sasl, sizeof(m[i].sasl), "user%zu",
			    rnd() % span);
			m[i].f.sasl_user = m[i].sasl;
		}
		m[i].f.trusted = rnd() % 100 == 0;
		snprintf(buf, sizeof(buf), "<rcpt@dest%zu.example.org>",
		    (size_t)(rnd() % span));
		(void)ag_mailaddr_parse(buf, &m[i].rcpt);
	}
}

/* MAIL FROM and one RCPT TO, as the session does. */
static size_t
one_message(const struct ag_policy *p, struct msg *m, bool linear)
{
	const struct ag_rule *rr[RATES_MAX];
	struct ag_eval ev;
	size_t sink = 0;

	m->f.rcpt = NULL;
	if (linear) {
		ag_policy_eval_linear(p, &m->f, &ev);
		sink += ev.nmatched + ag_policy_rates_linear(p, &m->f, rr,
		    RATES_MAX);
		m->f.rcpt = &m->rcpt;
		ag_policy_eval_linear(p, &m->f, &ev);
		sink += ev.nmatched + ag_policy_rates_linear(p, &m->f, rr,
		    RATES_MAX);
	} else {
		ag_policy_eval(p, &m->f, &ev);
		sink += ev.nmatched + ag_policy_rates(p, &m->f, rr, RATES_MAX);
		m->f.rcpt = &m->rcpt;
		ag_policy_eval(p, &m->f, &ev);
		sink += ev.nmatched + ag_policy_rates(p, &m->f, rr, RATES_MAX);
	}
	return sink;
}

static volatile size_t sink;

/* Messages per second over SECONDS. */
static double
run(const struct ag_policy *p, struct msg *m, bool linear, double seconds)
{
	size_t n = 0, step = 1 + 16384 / (ag_policy_count(p) + 1), j;
	double t0 = now_s(), t;

	for (;;) {
		for (j = 0; j < step; j++, n++) {
			sink += one_message(p, &m[n % NFACTS], linear);
		}
		if ((t = now_s() - t0) >= seconds) {
			return (double)n / t;
		}
	}
}

static int
dbl_cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/* Average candidates the index gives per evaluation, and matches. */
static void
candidates(const struct ag_policy *p, struct msg *m, double *cand,
    double *matched)
{
	struct ag_pcand c;
	struct ag_eval ev;
	size_t i, k, r, nc = 0, nmat = 0;

	for (i = 0; i < NFACTS; i++) {
		for (r = 0; r < 2; r++) {
			m[i].f.rcpt = r ? &m[i].rcpt : NULL;
			ag_pcand_gather(ag_policy_index(p), ag_policy_count(p),
			    &m[i].f, &c);
			while (ag_pcand_next(&c, &k)) {
				nc++;
			}
			ag_pcand_done(&c);
			ag_policy_eval(p, &m[i].f, &ev);
			nmat += ev.nmatched;
		}
	}
	*cand = (double)nc / (2 * NFACTS);
	*matched = (double)nmat / (2 * NFACTS);
}

static void
scaling(double seconds)
{
	static const size_t counts[] = { 10, 100, 1000, 10000, 100000 };
	struct msg *m = xcalloc(NFACTS, sizeof(*m));
	double lin[ROUNDS], idx[ROUNDS], cand, matched;
	struct ag_policy *p;
	size_t c, r;

	printf("messages/s (ag_policy_eval + ag_policy_rates at MAIL and at "
	    "one RCPT), median of %d alternating runs of %.1f s\n\n", ROUNDS,
	    seconds);
	printf("| rules | linear scan | index | index / scan | candidates "
	    "per evaluation | rules matched per evaluation |\n");
	printf("| ---: | ---: | ---: | ---: | ---: | ---: |\n");
	for (c = 0; c < sizeof(counts) / sizeof(counts[0]); c++) {
		p = make_policy(counts[c], NULL);
		make_msgs(m, NFACTS, counts[c]);
		for (r = 0; r < ROUNDS; r++) {
			lin[r] = run(p, m, true, seconds);
			idx[r] = run(p, m, false, seconds);
		}
		qsort(lin, ROUNDS, sizeof(double), dbl_cmp);
		qsort(idx, ROUNDS, sizeof(double), dbl_cmp);
		candidates(p, m, &cand, &matched);
		printf("| %zu | %.0f | %.0f | %.1f× | %.1f | %.2f |\n",
		    counts[c], lin[ROUNDS / 2], idx[ROUNDS / 2],
		    idx[ROUNDS / 2] / lin[ROUNDS / 2], cand, matched);
		fflush(stdout);
		ag_policy_free(p);
	}
	free(m);
}

/* Build time and memory of a 100,000-rule snapshot (run first: RSS). */
static void
build_cost(size_t n)
{
	struct ag_pindex_stats st;
	struct ag_pindex *x;
	struct ag_policy *p;
	struct ag_rule *rules;
	double t0, tb[ROUNDS], ti[ROUNDS];
	long rss0, rss1, rss2, h0, h1, h2;
	size_t r, f;

	rss0 = rss_kb();
	h0 = heap_kb();
	rules = make_rules(n);
	rss1 = rss_kb();
	h1 = heap_kb();
	if (ag_policy_new(rules, n, &p) != AG_OK) {
		exit(1);
	}
	rss2 = rss_kb();
	h2 = heap_kb();
	ag_pindex_stats(ag_policy_index(p), &st);
	ag_policy_free(p);
	for (r = 0; r < ROUNDS; r++) {
		p = make_policy(n, &tb[r]);
		t0 = now_s();
		if (ag_pindex_build(ag_policy_rule(p, 0), ag_policy_count(p),
		    &x) != AG_OK) {
			fprintf(stderr, "ag_pindex_build failed\n");
			exit(1);
		}
		ti[r] = now_s() - t0;
		ag_pindex_free(x);
		ag_policy_free(p);
	}
	qsort(tb, ROUNDS, sizeof(double), dbl_cmp);
	qsort(ti, ROUNDS, sizeof(double), dbl_cmp);
	printf("%zu rules: ag_policy_new %.1f ms (of which the index %.1f "
	    "ms), median of %d\n", n, tb[ROUNDS / 2] * 1e3, ti[ROUNDS / 2] * 1e3,
	    ROUNDS);
	printf("RSS: %ld kB at start, %ld kB with the rules built (+%ld kB), "
	    "%ld kB with the snapshot (+%ld kB)\n", rss0, rss1, rss1 - rss0,
	    rss2, rss2 - rss1);
	printf("heap in use: rules %ld kB, snapshot on top of them %ld kB\n",
	    h1 - h0, h2 - h1);
	printf("index: %zu bytes (%.1f per rule), %zu keys, %zu buckets, "
	    "longest bucket %zu, %zu rules tried always\n", st.bytes,
	    (double)st.bytes / (double)n, st.entries, st.buckets, st.longest,
	    st.always);
	printf("indexed under:");
	for (f = 0; f < AG_F_COUNT; f++) {
		if (st.by_field[f] != 0) {
			printf(" %s %zu", ag_field_name((enum ag_field)f),
			    st.by_field[f]);
		}
	}
	printf("\n\n");
}

/* ---- the store ----------------------------------------------------------------- */

static void
sql_ok(sqlite3 *db, int rc, const char *what)
{
	if (rc != SQLITE_OK && rc != SQLITE_DONE) {
		fprintf(stderr, "%s: %s\n", what, sqlite3_errmsg(db));
		exit(1);
	}
}

/* Insert the rows of N rules as authgatectl would, in one transaction. */
static void
fill_db(const char *path, size_t n)
{
	sqlite3 *db;
	sqlite3_stmt *ru, *ma, *ac;
	struct rdesc d;
	size_t i;

	sql_ok(NULL, sqlite3_open(path, &db), "open");
	sql_ok(db, sqlite3_exec(db, "BEGIN", NULL, NULL, NULL), "begin");
	sql_ok(db, sqlite3_prepare_v2(db, "INSERT INTO rules (id, priority, "
	    "enabled, dry_run, max_size, created) VALUES (?, ?, 1, 0, ?, 0)",
	    -1, &ru, NULL), "prepare");
	sql_ok(db, sqlite3_prepare_v2(db, "INSERT INTO rule_match (rule_id, "
	    "field, value) VALUES (?, ?, ?)", -1, &ma, NULL), "prepare");
	sql_ok(db, sqlite3_prepare_v2(db, "INSERT INTO rule_action (rule_id, "
	    "kind, name, value) VALUES (?, 'rate', ?, ?)", -1, &ac, NULL),
	    "prepare");
	for (i = 0; i < n; i++) {
		describe(i, &d);
		sqlite3_bind_int64(ru, 1, (sqlite3_int64)i + 1);
		sqlite3_bind_int(ru, 2, d.priority);
		if (d.max_size >= 0) {
			sqlite3_bind_int64(ru, 3, d.max_size);
		} else {
			sqlite3_bind_null(ru, 3);
		}
		sql_ok(db, sqlite3_step(ru), "insert rule");
		sqlite3_reset(ru);
		if (d.field != NULL) {
			sqlite3_bind_int64(ma, 1, (sqlite3_int64)i + 1);
			sqlite3_bind_text(ma, 2, d.field, -1, SQLITE_STATIC);
			sqlite3_bind_text(ma, 3, d.value, -1, SQLITE_STATIC);
			sql_ok(db, sqlite3_step(ma), "insert match");
			sqlite3_reset(ma);
		}
		if (d.rate != NULL || d.exempt) {
			sqlite3_bind_int64(ac, 1, (sqlite3_int64)i + 1);
			sqlite3_bind_text(ac, 2, d.rate ? "1" : "exempt", -1,
			    SQLITE_STATIC);
			sqlite3_bind_text(ac, 3, d.rate ? d.rate : "yes", -1,
			    SQLITE_STATIC);
			sql_ok(db, sqlite3_step(ac), "insert action");
			sqlite3_reset(ac);
		}
	}
	sqlite3_finalize(ru);
	sqlite3_finalize(ma);
	sqlite3_finalize(ac);
	sql_ok(db, sqlite3_exec(db, "COMMIT", NULL, NULL, NULL), "commit");
	sqlite3_close(db);
}

static void
store_load(size_t n)
{
	char dir[] = "/tmp/policybench.XXXXXX", path[128], aux[160];
	struct ag_store *s = NULL;
	struct ag_policy *p = NULL;
	double t0, tfill, tload[ROUNDS];
	long h0 = 0, h1 = 0;
	size_t r;

	if (mkdtemp(dir) == NULL) {
		perror("mkdtemp");
		exit(1);
	}
	snprintf(path, sizeof(path), "%s/authgate.db", dir);
	if (ag_store_open(path, AG_STORE_CREATE, 5000, &s) != AG_OK) {
		fprintf(stderr, "store: %s\n", s ? ag_store_errstr(s) : "?");
		exit(1);
	}
	ag_store_close(s);
	t0 = now_s();
	fill_db(path, n);
	tfill = now_s() - t0;
	if (ag_store_open(path, 0, 5000, &s) != AG_OK) {
		fprintf(stderr, "store: %s\n", s ? ag_store_errstr(s) : "?");
		exit(1);
	}
	for (r = 0; r < ROUNDS; r++) {
		h0 = heap_kb();
		t0 = now_s();
		if (ag_store_load_policy(s, &p) != AG_OK) {
			fprintf(stderr, "load: %s\n", ag_store_errstr(s));
			exit(1);
		}
		tload[r] = now_s() - t0;
		h1 = heap_kb();
		if (ag_policy_count(p) != n) {
			fprintf(stderr, "loaded %zu rules\n", ag_policy_count(p));
			exit(1);
		}
		ag_policy_free(p);
	}
	qsort(tload, ROUNDS, sizeof(double), dbl_cmp);
	ag_store_close(s);
	printf("\nSQLite: %zu rules inserted in %.2f s (one transaction); "
	    "ag_store_load_policy %.0f ms (median of %d; the policy holds "
	    "%ld kB of heap)\n", n, tfill, tload[ROUNDS / 2] * 1e3, ROUNDS,
	    h1 - h0);
	snprintf(aux, sizeof(aux), "%s-wal", path);
	unlink(aux);
	snprintf(aux, sizeof(aux), "%s-shm", path);
	unlink(aux);
	snprintf(aux, sizeof(aux), "%s-journal", path);
	unlink(aux);
	unlink(path);
	rmdir(dir);
}

int
main(int argc, char **argv)
{
	double seconds = 0.4;
	bool store = true;
	int i;

	for (i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--no-store") == 0) {
			store = false;
		} else if (atof(argv[i]) > 0) {
			seconds = atof(argv[i]);
		} else {
			fprintf(stderr, "usage: policybench [SECONDS] "
			    "[--no-store]\n");
			return 2;
		}
	}
	build_cost(100000);
	scaling(seconds);
	if (store) {
		store_load(100000);
	}
	return 0;
}

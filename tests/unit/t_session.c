/*
 * t_session.c - the session pipeline (lib/session.c + lib/engine.c) over a
 * real SQLite store in a temporary directory: phase verdicts for size and
 * recipient limits, precedence, dry runs, database failures, protocol
 * misuse, and snapshot pinning across a policy change.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "config.h"
#include "engine.h"
#include "log.h"
#include "msgfile.h"
#include "policy.h"
#include "session.h"
#include "store.h"

static char tmpdir[64];
static char dbpath[128];

/* A rule for add_rule(): up to two conditions. */
struct rspec {
	int priority;
	const char *f1, *v1, *f2, *v2;
	int64_t max_size;
	int64_t max_rcpts;
	bool dry_run;
	const char *rate1, *rate2;	/* --rate specs */
	const char *on_limit;		/* tempfail (unset), reject, tag */
	bool exempt;
};

/* Add a rule to the test database; returns its id. */
static int64_t
add_rule(const struct rspec *rs)
{
	struct ag_store *s = NULL;
	struct ag_match m[2];
	struct ag_rule r;
	int64_t id = 0;
	size_t n = 0;

	ag_rule_init(&r);
	memset(m, 0, sizeof(m));
	if (rs->f1 != NULL) {
		assert_int_equal(ag_field_parse(rs->f1, &m[n].field), 0);
		m[n++].value = (char *)(uintptr_t)rs->v1;
	}
	if (rs->f2 != NULL) {
		assert_int_equal(ag_field_parse(rs->f2, &m[n].field), 0);
		m[n++].value = (char *)(uintptr_t)rs->v2;
	}
	r.priority = rs->priority != 0 ? rs->priority : AG_PRIORITY_DEFAULT;
	r.dry_run = rs->dry_run;
	r.nmatch = n;
	r.match = m;
	r.max_size = rs->max_size != 0 ? rs->max_size : AG_LIMIT_UNSET;
	r.max_rcpts = rs->max_rcpts != 0 ? rs->max_rcpts : AG_LIMIT_UNSET;
	r.exempt = rs->exempt;
	for (const char *const *sp = &rs->rate1; sp <= &rs->rate2; sp++) {
		char err[256];

		if (*sp != NULL) {
			if (ag_rate_spec_parse(*sp, &r.rate[r.nrate], err,
			    sizeof(err)) != AG_OK) {
				fail_msg("%s", err);
			}
			r.nrate++;
		}
	}
	if (rs->on_limit != NULL) {
		enum ag_disp d;

		assert_int_equal(ag_disp_parse(rs->on_limit, &d), 0);
		r.on_limit = d;
	}
	assert_int_equal(ag_store_open(dbpath, AG_STORE_CREATE, 1000, &s), AG_OK);
	assert_int_equal(ag_store_rule_add(s, &r, &id), AG_OK);
	ag_store_close(s);
	return id;
}

/* A config over the test database, with EXTRA lines appended. */
static struct ag_config *
make_cfg(const char *extra)
{
	char text[1024], err[256];
	struct ag_config *cfg = NULL;

	snprintf(text, sizeof(text), "Database %s\nAuthservID mx.test\n"
	    "DNSServer 127.0.0.1@9\nDNSTimeout 200\nSPFCheck no\n"
	    "DMARCCheck no\n%s",
	    dbpath, extra != NULL ? extra : "");
	if (ag_config_load_string(text, "test.conf", &cfg, err,
	    sizeof(err)) != AG_OK) {
		fail_msg("config: %s", err);
	}
	return cfg;
}

struct fixture {
	struct ag_config *cfg;
	struct ag_engine *eng;
	struct ag_conn *conn;
};

static void
fx_open(struct fixture *fx, const char *extra, const char *ip)
{
	struct ag_conn_info info = { .client_addr = ip, .client_name = "client.test" };
	struct ag_verdict v;

	fx->cfg = make_cfg(extra);
	assert_int_equal(ag_engine_new(fx->cfg, true, &fx->eng), AG_OK);
	fx->conn = ag_conn_new(fx->eng, &info, &v);
	assert_non_null(fx->conn);
	assert_int_equal(v.action, AG_ACT_CONTINUE);
	ag_conn_helo(fx->conn, "client.test", &v);
	assert_int_equal(v.action, AG_ACT_CONTINUE);
}

static void
fx_close(struct fixture *fx)
{
	ag_conn_free(fx->conn);
	ag_engine_free(fx->eng);
	ag_config_unref(fx->cfg);
}

/* MAIL FROM with optional SIZE= text. */
static void
mail(struct fixture *fx, const char *from, const char *size, struct ag_verdict *v)
{
	char sizearg[64];
	char *argv[3] = { (char *)(uintptr_t)from, NULL, NULL };

	if (size != NULL) {
		snprintf(sizearg, sizeof(sizearg), "SIZE=%s", size);
		argv[1] = sizearg;
	}
	ag_conn_mail(fx->conn, argv, v);
}

static void
rcpt(struct fixture *fx, const char *to, struct ag_verdict *v)
{
	char *argv[2] = { (char *)(uintptr_t)to, NULL };

	ag_conn_rcpt(fx->conn, argv, v);
}

/* Headers plus a body of BODYLEN bytes, then end of message. */
static void
message(struct fixture *fx, size_t bodylen, struct ag_verdict *v)
{
	static unsigned char chunk[4096];
	const struct ag_edit *ed;
	size_t n;

	memset(chunk, 'x', sizeof(chunk));
	ag_conn_header(fx->conn, "Subject", "test", v);
	assert_int_equal(v->action, AG_ACT_CONTINUE);
	ag_conn_eoh(fx->conn, v);
	if (ag_verdict_is_final(v)) {
		return;
	}
	while (bodylen > 0) {
		size_t k = bodylen < sizeof(chunk) ? bodylen : sizeof(chunk);

		ag_conn_body(fx->conn, chunk, k, v);
		if (ag_verdict_is_final(v)) {
			return;
		}
		bodylen -= k;
	}
	ag_conn_eom(fx->conn, v, &ed, &n);
}

static void
expect(const struct ag_verdict *v, enum ag_action a, const char *rcode,
    const char *xcode, const char *label)
{
	if (v->action != a || strcmp(v->rcode, rcode) != 0 ||
	    strcmp(v->xcode, xcode) != 0) {
		fail_msg("%s: expected %s %s %s, got %s %s %s (%s)", label,
		    ag_action_name(a), rcode, xcode, ag_action_name(v->action),
		    v->rcode, v->xcode, v->text);
	}
}

static int
setup(void **state)
{
	(void)state;
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/t_session.XXXXXX");
	assert_non_null(mkdtemp(tmpdir));
	snprintf(dbpath, sizeof(dbpath), "%s/ag.db", tmpdir);
	return 0;
}

static int
teardown(void **state)
{
	char p[160];

	(void)state;
	unlink(dbpath);
	snprintf(p, sizeof(p), "%s-journal", dbpath);
	unlink(p);
	rmdir(tmpdir);
	return 0;
}

static void
test_no_rules_accepts(void **state)
{
	struct fixture fx;
	struct ag_verdict v;

	(void)state;
	fx_open(&fx, NULL, "192.0.2.1");
	mail(&fx, "<a@example.com>", "100000000", &v);
	expect(&v, AG_ACT_CONTINUE, "", "", "mail");
	rcpt(&fx, "<b@example.net>", &v);
	expect(&v, AG_ACT_CONTINUE, "", "", "rcpt");
	message(&fx, 10000, &v);
	expect(&v, AG_ACT_CONTINUE, "", "", "eom");
	fx_close(&fx);
}

static void
test_size_limits(void **state)
{
	static const struct {
		const char *label, *from, *size;
		size_t body;
		enum ag_action mail_a;
		const char *mail_x;
		enum ag_action end_a;
		const char *end_x;
	} cases[] = {
		{ "SIZE under default", "<a@example.com>", "900", 100,
		  AG_ACT_CONTINUE, "", AG_ACT_CONTINUE, "" },
		{ "SIZE over default", "<a@example.com>", "1001", 0,
		  AG_ACT_REJECT, "5.3.4", AG_ACT_CONTINUE, "" },
		{ "no SIZE, real size over", "<a@example.com>", NULL, 2000,
		  AG_ACT_CONTINUE, "", AG_ACT_REJECT, "5.3.4" },
		{ "domain rule beats default", "<a@big.example>", "5000", 4000,
		  AG_ACT_CONTINUE, "", AG_ACT_CONTINUE, "" },
		{ "domain rule, over its limit", "<a@big.example>", NULL, 20000,
		  AG_ACT_CONTINUE, "", AG_ACT_REJECT, "5.3.4" },
		{ "SIZE malformed", "<a@example.com>", "12x", 0,
		  AG_ACT_REJECT, "5.5.4", AG_ACT_CONTINUE, "" },
		{ "SIZE negative", "<a@example.com>", "-1", 0,
		  AG_ACT_REJECT, "5.5.4", AG_ACT_CONTINUE, "" },
		{ "SIZE above 2^64", "<a@example.com>",
		  "99999999999999999999999999", 0,
		  AG_ACT_REJECT, "5.3.4", AG_ACT_CONTINUE, "" },
		{ "null sender", "<>", "1001", 0,
		  AG_ACT_REJECT, "5.3.4", AG_ACT_CONTINUE, "" },
	};
	struct rspec def = { .priority = 1000, .max_size = 1000 };
	struct rspec big = { .priority = 10, .f1 = "sender-domain",
	    .v1 = "big.example", .max_size = 10000 };
	int64_t def_id, big_id;

	(void)state;
	def_id = add_rule(&def);
	big_id = add_rule(&big);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct fixture fx;
		struct ag_verdict v;

		fx_open(&fx, NULL, "192.0.2.1");
		mail(&fx, cases[i].from, cases[i].size, &v);
		expect(&v, cases[i].mail_a, cases[i].mail_a == AG_ACT_CONTINUE ?
		    "" : (cases[i].mail_x[2] == '3' ? "552" : "501"),
		    cases[i].mail_x, cases[i].label);
		if (v.action == AG_ACT_CONTINUE) {
			rcpt(&fx, "<b@example.net>", &v);
			expect(&v, AG_ACT_CONTINUE, "", "", cases[i].label);
			message(&fx, cases[i].body, &v);
			expect(&v, cases[i].end_a, cases[i].end_a ==
			    AG_ACT_CONTINUE ? "" : "552", cases[i].end_x,
			    cases[i].label);
		}
		if (strcmp(v.xcode, "5.3.4") == 0) {
			int64_t want = strstr(cases[i].from, "big") ? big_id : def_id;

			if (v.rule_id != want) {
				fail_msg("%s: rule %lld, want %lld", cases[i].label,
				    (long long)v.rule_id, (long long)want);
			}
		}
		fx_close(&fx);
	}
}

static void
test_rcpt_limit(void **state)
{
	struct rspec r = { .max_rcpts = 2 };
	struct fixture fx;
	struct ag_verdict v;
	int64_t id;

	(void)state;
	id = add_rule(&r);
	fx_open(&fx, NULL, "2001:db8::25");
	mail(&fx, "<a@example.com>", NULL, &v);
	rcpt(&fx, "<r1@example.net>", &v);
	expect(&v, AG_ACT_CONTINUE, "", "", "rcpt 1");
	rcpt(&fx, "<r2@example.net>", &v);
	expect(&v, AG_ACT_CONTINUE, "", "", "rcpt 2");
	rcpt(&fx, "<r3@example.net>", &v);
	expect(&v, AG_ACT_TEMPFAIL, "452", "4.5.3", "rcpt 3");
	assert_int_equal(v.rule_id, id);
	rcpt(&fx, "<r4@example.net>", &v);
	expect(&v, AG_ACT_TEMPFAIL, "452", "4.5.3", "rcpt 4");
	message(&fx, 10, &v);
	expect(&v, AG_ACT_CONTINUE, "", "", "eom after refusals");
	fx_close(&fx);
}

static void
test_rcpt_domain_size(void **state)
{
	struct rspec r = { .f1 = "rcpt-domain", .v1 = "small.example",
	    .max_size = 500 };
	struct fixture fx;
	struct ag_verdict v;

	(void)state;
	add_rule(&r);
	fx_open(&fx, NULL, "192.0.2.1");
	mail(&fx, "<a@example.com>", "800", &v);
	expect(&v, AG_ACT_CONTINUE, "", "", "mail: rcpt rules unknown yet");
	rcpt(&fx, "<x@small.example>", &v);
	expect(&v, AG_ACT_REJECT, "552", "5.3.4", "rcpt over its domain limit");
	rcpt(&fx, "<x@other.example>", &v);
	expect(&v, AG_ACT_CONTINUE, "", "", "other rcpt");
	message(&fx, 700, &v);
	expect(&v, AG_ACT_CONTINUE, "", "", "eom");
	ag_conn_abort(fx.conn);

	/* without SIZE=, the smallest limit of the recipients applies */
	mail(&fx, "<a@example.com>", NULL, &v);
	rcpt(&fx, "<x@small.example>", &v);
	expect(&v, AG_ACT_CONTINUE, "", "", "rcpt, no SIZE");
	message(&fx, 700, &v);
	expect(&v, AG_ACT_REJECT, "552", "5.3.4", "eom over rcpt limit");
	fx_close(&fx);
}

static void
test_dry_run(void **state)
{
	struct rspec r = { .max_size = 100, .dry_run = true };
	struct fixture fx;
	struct ag_verdict v;

	(void)state;
	add_rule(&r);
	fx_open(&fx, NULL, "192.0.2.1");
	mail(&fx, "<a@example.com>", "5000", &v);
	expect(&v, AG_ACT_CONTINUE, "", "", "dry-run rule");
	assert_true(v.dry_run);
	rcpt(&fx, "<b@example.net>", &v);
	message(&fx, 5000, &v);
	expect(&v, AG_ACT_CONTINUE, "", "", "dry-run eom");
	fx_close(&fx);
	unlink(dbpath);

	r.dry_run = false;
	add_rule(&r);
	fx_open(&fx, "DryRun yes\n", "192.0.2.1");
	mail(&fx, "<a@example.com>", "5000", &v);
	expect(&v, AG_ACT_CONTINUE, "", "", "DryRun config");
	assert_true(v.dry_run);
	fx_close(&fx);
}

static void
test_database_failure(void **state)
{
	static const struct {
		const char *label, *extra;
		enum ag_action a;
		const char *rcode, *xcode;
	} cases[] = {
		{ "corrupt, default tempfail", NULL, AG_ACT_TEMPFAIL, "451", "4.3.0" },
		{ "corrupt, On-DatabaseError accept", "On-DatabaseError accept\n",
		  AG_ACT_CONTINUE, "", "" },
	};
	FILE *fp;

	(void)state;
	fp = fopen(dbpath, "w");
	assert_non_null(fp);
	fputs("this is not an SQLite database, it is junk junk junk junk\n", fp);
	fclose(fp);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct fixture fx;
		struct ag_verdict v;
		const struct ag_snapshot *s;

		fx_open(&fx, cases[i].extra, "192.0.2.1");
		s = ag_engine_acquire(fx.eng);
		assert_null(s->policy);
		assert_true(s->dberr[0] != '\0');
		ag_snapshot_release(s);
		mail(&fx, "<a@example.com>", NULL, &v);
		expect(&v, cases[i].a, cases[i].rcode, cases[i].xcode,
		    cases[i].label);
		fx_close(&fx);
	}
}

static void
test_protocol_misuse(void **state)
{
	struct fixture fx;
	struct ag_verdict v;
	const struct ag_edit *ed;
	size_t n;

	(void)state;
	fx_open(&fx, NULL, NULL);	/* no client address: unix socket */
	rcpt(&fx, "<b@example.net>", &v);
	expect(&v, AG_ACT_TEMPFAIL, "451", "4.3.0", "rcpt before mail");
	ag_conn_header(fx.conn, "Subject", "x", &v);
	expect(&v, AG_ACT_TEMPFAIL, "451", "4.3.0", "header before mail");
	ag_conn_eom(fx.conn, &v, &ed, &n);
	expect(&v, AG_ACT_TEMPFAIL, "451", "4.3.0", "eom before mail");
	ag_conn_abort(fx.conn);		/* nothing to abort: harmless */
	mail(&fx, "<a@example.com", NULL, &v);
	expect(&v, AG_ACT_REJECT, "501", "5.1.7", "unbalanced bracket");
	ag_conn_mail(fx.conn, NULL, &v);
	expect(&v, AG_ACT_REJECT, "501", "5.1.7", "no argv");
	mail(&fx, "<a@example.com>", NULL, &v);
	rcpt(&fx, "<>", &v);
	expect(&v, AG_ACT_REJECT, "501", "5.1.3", "null recipient");
	/* a second MAIL without abort ends the first transaction */
	mail(&fx, "<a@example.com>", NULL, &v);
	expect(&v, AG_ACT_CONTINUE, "", "", "second mail");
	rcpt(&fx, "<b@example.net>", &v);
	message(&fx, 1, &v);
	expect(&v, AG_ACT_CONTINUE, "", "", "message after misuse");
	fx_close(&fx);
}

static void
test_snapshot_pinned(void **state)
{
	struct rspec r = { .max_size = 100 };
	struct fixture fx;
	struct ag_verdict v;

	(void)state;
	fx_open(&fx, NULL, "192.0.2.1");
	mail(&fx, "<a@example.com>", NULL, &v);
	rcpt(&fx, "<b@example.net>", &v);
	add_rule(&r);
	ag_engine_refresh(fx.eng, false);
	message(&fx, 1000, &v);
	expect(&v, AG_ACT_CONTINUE, "", "", "in-flight keeps its snapshot");
	mail(&fx, "<a@example.com>", NULL, &v);
	rcpt(&fx, "<b@example.net>", &v);
	message(&fx, 1000, &v);
	expect(&v, AG_ACT_REJECT, "552", "5.3.4", "next message sees the rule");
	fx_close(&fx);
}

/* ---- DKIM: a rule requiring a signature; forged headers -------------- */

struct feed {
	struct ag_conn *c;
	struct ag_verdict *v;
};

static int
feed_header(void *arg, const char *name, const char *value)
{
	struct feed *f = arg;

	ag_conn_set_leadspc(f->c, true);	/* lib/msgfile.c keeps it */
	ag_conn_header(f->c, name, value, f->v);
	return ag_verdict_is_final(f->v);
}

static int
feed_eoh(void *arg)
{
	struct feed *f = arg;

	ag_conn_eoh(f->c, f->v);
	return ag_verdict_is_final(f->v);
}

static int
feed_body(void *arg, const unsigned char *buf, size_t len)
{
	struct feed *f = arg;

	ag_conn_body(f->c, buf, len, f->v);
	return ag_verdict_is_final(f->v);
}

/* Serve tests/unit/dkim/zone.txt from the engine's resolver. */
static void
load_zone(struct ag_engine *e)
{
	const struct ag_snapshot *snap = ag_engine_acquire(e);
	char path[4096], line[8192];
	const char *src = getenv("AG_SRCDIR");
	FILE *fp;

	snprintf(path, sizeof(path), "%s/tests/unit/dkim/zone.txt",
	    src != NULL ? src : ".");
	fp = fopen(path, "r");
	if (fp == NULL || snap->dns == NULL) {
		fail_msg("cannot read %s or no resolver", path);
	}
	while (fgets(line, sizeof(line), fp) != NULL) {
		line[strcspn(line, "\n")] = '\0';
		if (line[0] != '#' && line[0] != '\0') {
			assert_int_equal(ag_dns_add_local(snap->dns, line), AG_OK);
		}
	}
	fclose(fp);
	ag_snapshot_release(snap);
}

/* Run FILE (under tests/unit/dkim/, or an absolute path) from SENDER. */
static void
dkim_message(struct fixture *fx, const char *file, const char *sender,
    struct ag_verdict *v, const struct ag_edit **ed, size_t *ned)
{
	struct feed f = { fx->conn, v };
	struct ag_msgfile_cb cb = { feed_header, feed_eoh, feed_body, &f };
	const char *src = getenv("AG_SRCDIR");
	char path[4096], err[128];
	FILE *fp;

	*ned = 0;
	if (file[0] == '/') {
		snprintf(path, sizeof(path), "%s", file);
	} else {
		snprintf(path, sizeof(path), "%s/tests/unit/dkim/%s",
		    src != NULL ? src : ".", file);
	}
	mail(fx, sender, NULL, v);
	assert_int_equal(v->action, AG_ACT_CONTINUE);
	rcpt(fx, "<bob@example.org>", v);
	fp = fopen(path, "r");
	if (fp == NULL) {
		fail_msg("cannot read %s", path);
	}
	assert_int_equal(ag_msgfile_read(fp, &cb, err, sizeof(err)), AG_OK);
	fclose(fp);
	if (!ag_verdict_is_final(v)) {
		ag_conn_eom(fx->conn, v, ed, ned);
	}
}

/* The value of the Authentication-Results header inserted, or NULL. */
static const char *
inserted_ar(const struct ag_edit *ed, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (ed[i].op == AG_EDIT_INSERT &&
		    strcmp(ed[i].name, "Authentication-Results") == 0) {
			return ed[i].value;
		}
	}
	return NULL;
}

static void
test_dkim_require(void **state)
{
	static const struct {
		const char *label, *file, *sender;
		enum ag_action a;
		const char *xcode, *ar_has;
	} cases[] = {
		{ "signed by the sender domain", "rr.eml", "<a@example.com>",
		  AG_ACT_CONTINUE, "", "dkim=pass header.d=example.com" },
		{ "unsigned", "base.eml", "<a@example.com>", AG_ACT_REJECT,
		  "5.7.20", NULL },
		{ "signed by another domain only", "rr.eml", "<a@example.net>",
		  AG_ACT_REJECT, "5.7.22", NULL },
		{ "weak key (RFC 8301)", "r512.eml", "<a@example.com>",
		  AG_ACT_REJECT, "5.7.21", NULL },
		{ "a subdomain's signature covers it", "sub-d.eml",
		  "<a@example.org>", AG_ACT_CONTINUE, "", "dkim=pass" },
		{ "not required: unsigned is accepted", "base.eml",
		  "<a@example.edu>", AG_ACT_CONTINUE, "", "dkim=none" },
	};
	struct rspec r1 = { .f1 = "sender-domain", .v1 = "example.com" };
	struct rspec r2 = { .f1 = "sender-domain", .v1 = "example.net" };
	struct rspec r3 = { .f1 = "sender-domain", .v1 = "example.org" };
	struct ag_store *st = NULL;

	(void)state;
	/* --dkim require rules (add_rule has no field for it) */
	assert_int_equal(ag_store_open(dbpath, AG_STORE_CREATE, 1000, &st), AG_OK);
	ag_store_close(st);
	for (int i = 0; i < 3; i++) {
		const struct rspec *rs = i == 0 ? &r1 : i == 1 ? &r2 : &r3;
		struct ag_match m = { 0 };
		struct ag_rule r;
		int64_t id;

		ag_rule_init(&r);
		assert_int_equal(ag_field_parse(rs->f1, &m.field), 0);
		m.value = (char *)(uintptr_t)rs->v1;
		r.nmatch = 1;
		r.match = &m;
		r.dkim_require = 1;
		assert_int_equal(ag_store_open(dbpath, 0, 1000, &st), AG_OK);
		assert_int_equal(ag_store_rule_add(st, &r, &id), AG_OK);
		ag_store_close(st);
	}
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct fixture fx;
		struct ag_verdict v;
		const struct ag_edit *ed;
		const char *ar;
		size_t n;

		fx_open(&fx, "DKIMVerify yes\n", "192.0.2.1");
		load_zone(fx.eng);
		dkim_message(&fx, cases[i].file, cases[i].sender, &v, &ed, &n);
		expect(&v, cases[i].a, cases[i].a == AG_ACT_CONTINUE ? "" :
		    "550", cases[i].xcode, cases[i].label);
		ar = inserted_ar(ed, n);
		if (cases[i].ar_has != NULL &&
		    (ar == NULL || strstr(ar, cases[i].ar_has) == NULL)) {
			fail_msg("%s: Authentication-Results \"%s\" lacks \"%s\"",
			    cases[i].label, ar != NULL ? ar : "(none)",
			    cases[i].ar_has);
		}
		fx_close(&fx);
	}
}

static void
test_forged_ar_removed(void **state)
{
	static const char msg[] =
	    "Authentication-Results: mx.test; spf=pass smtp.mailfrom=x@y.example\n"
	    "Authentication-Results: other.example; dkim=pass\n"
	    "Authentication-Results: (comment) MX.TEST;\n\tdkim=pass\n"
	    "Authentication-Results: ((unbalanced mx.test; none\n"
	    "From: a@example.com\n"
	    "Subject: forged\n"
	    "\n"
	    "body\n";
	char path[] = "/tmp/t_session_msg.XXXXXX";
	struct fixture fx;
	struct ag_verdict v;
	const struct ag_edit *ed;
	size_t n, deletes = 0;
	int fd = mkstemp(path), want[3] = { 4, 3, 1 };

	(void)state;
	assert_true(fd >= 0);
	assert_int_equal(write(fd, msg, sizeof(msg) - 1), (ssize_t)sizeof(msg) - 1);
	close(fd);
	fx_open(&fx, "DKIMVerify yes\n", "192.0.2.1");
	dkim_message(&fx, path, "<a@example.com>", &v, &ed, &n);
	unlink(path);
	expect(&v, AG_ACT_CONTINUE, "", "", "forged headers");
	/* ours (1, 3) and the unreadable one (4), last first; 2 is kept */
	for (size_t i = 0; i < n; i++) {
		if (ed[i].op != AG_EDIT_DELETE) {
			continue;
		}
		if (deletes >= 3 || ed[i].index != want[deletes] ||
		    strcmp(ed[i].name, "Authentication-Results") != 0) {
			fail_msg("delete %zu: %s[%d]", deletes, ed[i].name,
			    ed[i].index);
		}
		deletes++;
	}
	assert_int_equal(deletes, 3);
	assert_non_null(inserted_ar(ed, n));
	fx_close(&fx);
}

static int
reset_db(void **state)
{
	char p[160];

	(void)state;
	unlink(dbpath);
	snprintf(p, sizeof(p), "%s-journal", dbpath);
	unlink(p);
	return 0;
}


/* ---- rate limits ----------------------------------------------------- */

static uint64_t fake_now = 1700000000000ULL;	/* ms, moved by the tests */

static uint64_t
fake_clock(void *arg)
{
	(void)arg;
	return fake_now;
}

/* Open FX with the engine's rate clock under the test's control. */
static void
fx_open_clocked(struct fixture *fx, const char *extra, const char *ip)
{
	const struct ag_snapshot *snap;

	fx_open(fx, extra, ip);
	snap = ag_engine_acquire(fx->eng);
	ag_rater_set_clock(snap->rater, fake_clock, NULL);
	ag_snapshot_release(snap);
}

/* One whole message from FROM to TO; V is the last verdict. */
static void
send_one(struct fixture *fx, const char *from, const char *to,
    const char *size, size_t body, struct ag_verdict *v)
{
	mail(fx, from, size, v);
	if (ag_verdict_is_final(v)) {
		return;
	}
	rcpt(fx, to, v);
	if (ag_verdict_is_final(v)) {
		ag_conn_abort(fx->conn);
		return;
	}
	message(fx, body, v);
}

/* Messages per client: a burst, then one every WINDOW/LIMIT; abort and
 * rejection give the quota back. */
static void
test_rate_messages(void **state)
{
	struct rspec r = { .rate1 = "messages:2/1h:client-ip" };
	struct rspec big = { .priority = 10, .f1 = "sender",
	    .v1 = "big@example.com", .max_size = 100 };
	struct fixture fx;
	struct ag_verdict v;
	int i;

	(void)state;
	add_rule(&r);
	add_rule(&big);
	fx_open_clocked(&fx, NULL, "192.0.2.1");
	/* aborted and rejected transactions cost nothing */
	for (i = 0; i < 5; i++) {
		mail(&fx, "<a@example.com>", NULL, &v);
		expect(&v, AG_ACT_CONTINUE, "", "", "mail before abort");
		ag_conn_abort(fx.conn);
		send_one(&fx, "<big@example.com>", "<b@example.net>", NULL, 500,
		    &v);
		expect(&v, AG_ACT_REJECT, "552", "5.3.4", "rejected in the body");
	}
	for (i = 0; i < 2; i++) {
		send_one(&fx, "<a@example.com>", "<b@example.net>", NULL, 10, &v);
		expect(&v, AG_ACT_CONTINUE, "", "", "within the burst");
	}
	mail(&fx, "<a@example.com>", NULL, &v);
	expect(&v, AG_ACT_TEMPFAIL, "451", "4.7.1", "over the limit");
	assert_string_equal(v.reason, "rate");
	assert_non_null(strstr(v.text, "2 messages per 1h for client-ip "
	    "192.0.2.1/32, try again in 1800 seconds"));
	/* half the window later exactly one more passes */
	fake_now += 1800 * 1000;
	send_one(&fx, "<a@example.com>", "<b@example.net>", NULL, 10, &v);
	expect(&v, AG_ACT_CONTINUE, "", "", "refilled one");
	mail(&fx, "<a@example.com>", NULL, &v);
	expect(&v, AG_ACT_TEMPFAIL, "451", "4.7.1", "and only one");
	fx_close(&fx);

	/* another client has its own counter */
	fx_open_clocked(&fx, NULL, "192.0.2.2");
	send_one(&fx, "<a@example.com>", "<b@example.net>", NULL, 10, &v);
	expect(&v, AG_ACT_CONTINUE, "", "", "other client");
	fx_close(&fx);
}

/* Recipients counted per RCPT; a refused recipient costs nothing. */
static void
test_rate_recipients(void **state)
{
	struct rspec r = { .rate1 = "recipients:3/1h:sender",
	    .on_limit = "reject" };
	struct fixture fx;
	struct ag_verdict v;

	(void)state;
	add_rule(&r);
	fx_open_clocked(&fx, NULL, "192.0.2.1");
	mail(&fx, "<a@example.com>", NULL, &v);
	rcpt(&fx, "<1@example.net>", &v);
	rcpt(&fx, "<2@example.net>", &v);
	expect(&v, AG_ACT_CONTINUE, "", "", "rcpt 2");
	ag_conn_abort(fx.conn);		/* both given back */
	mail(&fx, "<A@Example.com>", NULL, &v);	/* same key, any case */
	rcpt(&fx, "<1@example.net>", &v);
	rcpt(&fx, "<2@example.net>", &v);
	rcpt(&fx, "<3@example.net>", &v);
	expect(&v, AG_ACT_CONTINUE, "", "", "rcpt 3");
	rcpt(&fx, "<4@example.net>", &v);
	expect(&v, AG_ACT_REJECT, "550", "5.7.1", "rcpt 4");
	assert_non_null(strstr(v.text, "Rate limit exceeded: 3 recipients "
	    "per 1h for sender a@example.com"));
	message(&fx, 10, &v);
	expect(&v, AG_ACT_CONTINUE, "", "", "the three are accepted");
	send_one(&fx, "<a@example.com>", "<5@example.net>", NULL, 10, &v);
	expect(&v, AG_ACT_REJECT, "550", "5.7.1", "quota kept after accept");
	fx_close(&fx);
}

/* Bytes: SIZE= reserves, the real size trues it up at end of message. */
static void
test_rate_bytes(void **state)
{
	struct rspec r = { .rate1 = "bytes:1000/1h:sender-domain" };
	struct fixture fx;
	struct ag_verdict v;

	(void)state;
	add_rule(&r);
	fx_open_clocked(&fx, NULL, "192.0.2.1");
	/* declares 600, sends about 300: 300 or so stay used */
	send_one(&fx, "<a@example.com>", "<b@example.net>", "600", 270, &v);
	expect(&v, AG_ACT_CONTINUE, "", "", "declared 600, sent less");
	send_one(&fx, "<b@example.com>", "<b@example.net>", "600", 270, &v);
	expect(&v, AG_ACT_CONTINUE, "", "", "fits after the true-up");
	mail(&fx, "<c@example.com>", "600", &v);
	expect(&v, AG_ACT_TEMPFAIL, "451", "4.7.1", "over the byte quota");
	/* no SIZE=: decided at end of message */
	send_one(&fx, "<c@example.com>", "<b@example.net>", NULL, 600, &v);
	expect(&v, AG_ACT_TEMPFAIL, "451", "4.7.1", "eom over the quota");
	/* bigger than the whole quota: never, so a permanent answer */
	mail(&fx, "<d@example.com>", "5000", &v);
	expect(&v, AG_ACT_REJECT, "552", "5.3.4", "larger than the quota");
	fx_close(&fx);
}

/* Layered limits down to an exemption; tag and dry run only note. */
static void
test_rate_layers(void **state)
{
	struct rspec mbox = { .priority = 10, .f1 = "sender-domain",
	    .v1 = "corp.example", .rate1 = "messages:2/1h:sender" };
	struct rspec dom = { .priority = 20, .f1 = "sender-domain",
	    .v1 = "corp.example", .rate1 = "messages:3/1h:sender-domain" };
	struct rspec boss = { .priority = 5, .f1 = "sender",
	    .v1 = "boss@corp.example", .exempt = true };
	struct rspec tag = { .priority = 30, .f1 = "sender-domain",
	    .v1 = "tag.example", .rate1 = "messages:1/1h", .on_limit = "tag" };
	struct fixture fx;
	struct ag_verdict v;
	int64_t dom_id;
	int i;

	(void)state;
	add_rule(&mbox);
	dom_id = add_rule(&dom);
	add_rule(&boss);
	add_rule(&tag);
	fx_open_clocked(&fx, NULL, "192.0.2.1");
	for (i = 0; i < 5; i++) {
		send_one(&fx, "<boss@corp.example>", "<b@example.net>", NULL,
		    10, &v);
		expect(&v, AG_ACT_CONTINUE, "", "", "exempt");
	}
	send_one(&fx, "<a@corp.example>", "<b@example.net>", NULL, 10, &v);
	send_one(&fx, "<a@corp.example>", "<b@example.net>", NULL, 10, &v);
	expect(&v, AG_ACT_CONTINUE, "", "", "a: 2 of 2");
	mail(&fx, "<a@corp.example>", NULL, &v);
	expect(&v, AG_ACT_TEMPFAIL, "451", "4.7.1", "a: per-mailbox limit");
	send_one(&fx, "<b@corp.example>", "<b@example.net>", NULL, 10, &v);
	expect(&v, AG_ACT_CONTINUE, "", "", "b: domain has 3");
	mail(&fx, "<c@corp.example>", NULL, &v);
	expect(&v, AG_ACT_TEMPFAIL, "451", "4.7.1", "c: the domain pool");
	assert_int_equal(v.rule_id, dom_id);
	send_one(&fx, "<x@tag.example>", "<b@example.net>", NULL, 10, &v);
	expect(&v, AG_ACT_CONTINUE, "", "", "tag: first");
	assert_false(v.dry_run);
	mail(&fx, "<x@tag.example>", NULL, &v);
	expect(&v, AG_ACT_CONTINUE, "", "", "tag only");
	assert_true(v.dry_run);
	ag_conn_abort(fx.conn);
	fx_close(&fx);
}

/* Counters outlive the engine through the checkpoint. */
static void
test_rate_checkpoint(void **state)
{
	struct rspec r = { .rate1 = "messages:2/1h:sender" };
	struct fixture fx;
	struct ag_verdict v;

	(void)state;
	/* the restore at start compares with the wall clock */
	fake_now = (uint64_t)time(NULL) * 1000;
	add_rule(&r);
	fx_open_clocked(&fx, NULL, "192.0.2.1");
	send_one(&fx, "<a@example.com>", "<b@example.net>", NULL, 10, &v);
	expect(&v, AG_ACT_CONTINUE, "", "", "first");
	ag_engine_save(fx.eng);
	fx_close(&fx);

	fx_open_clocked(&fx, NULL, "192.0.2.1");
	send_one(&fx, "<a@example.com>", "<b@example.net>", NULL, 10, &v);
	expect(&v, AG_ACT_CONTINUE, "", "", "second, after the restart");
	mail(&fx, "<a@example.com>", NULL, &v);
	expect(&v, AG_ACT_TEMPFAIL, "451", "4.7.1", "third: restored");
	fx_close(&fx);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(test_no_rules_accepts, reset_db),
		cmocka_unit_test_setup(test_size_limits, reset_db),
		cmocka_unit_test_setup(test_rcpt_limit, reset_db),
		cmocka_unit_test_setup(test_rcpt_domain_size, reset_db),
		cmocka_unit_test_setup(test_dry_run, reset_db),
		cmocka_unit_test_setup(test_database_failure, reset_db),
		cmocka_unit_test_setup(test_protocol_misuse, reset_db),
		cmocka_unit_test_setup(test_snapshot_pinned, reset_db),
		cmocka_unit_test_setup(test_dkim_require, reset_db),
		cmocka_unit_test_setup(test_forged_ar_removed, reset_db),
		cmocka_unit_test_setup(test_rate_messages, reset_db),
		cmocka_unit_test_setup(test_rate_recipients, reset_db),
		cmocka_unit_test_setup(test_rate_bytes, reset_db),
		cmocka_unit_test_setup(test_rate_layers, reset_db),
		cmocka_unit_test_setup(test_rate_checkpoint, reset_db),
	};

	ag_log_open("t_session", LOG_MAIL, 0);
	return cmocka_run_group_tests(tests, setup, teardown);
}

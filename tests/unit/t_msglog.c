/*
 * t_msglog.c - unit tests for lib/msglog.c, the message history: a row's
 * copy (strings cut to their bounds, NULLs kept), rows written through
 * the history queue to a real SQLite store and read back column by
 * column, pruning with the DMARC rows, the report (totals, every
 * grouping, every filter, the period's edges, --top, ties by key, an
 * empty period, hostile keys returned as stored), the name tables and
 * the --since parser (table-driven).
 *
 * All cases run as one cmocka group; the group setup makes a temporary
 * directory and the teardown removes it.
 */
#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "history.h"
#include "msglog.h"
#include "store.h"

#define TIMEOUT_MS 100
#define NOW 1700000000LL
#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

static char tmpdir[256];

/* A fresh store for case NAME. */
static struct ag_store *
new_store(const char *name)
{
	char path[512];
	struct ag_store *s = NULL;

	snprintf(path, sizeof(path), "%s/%s.db", tmpdir, name);
	unlink(path);
	if (ag_store_open(path, AG_STORE_CREATE, TIMEOUT_MS, &s) != AG_OK) {
		fail_msg("%s: %s", path, ag_store_errstr(s));
	}
	return s;
}

/* A row with everything set to something plain. */
static struct ag_msglog_row
row(int64_t t, const char *sender, const char *domain, const char *ip,
    const char *action)
{
	struct ag_msglog_row r;

	memset(&r, 0, sizeof(r));
	r.time = t;
	r.qid = "4F1A2B3C";
	r.client_ip = ip;
	r.client_name = "client.example";
	r.helo = "client.example";
	r.sender = sender;
	r.sender_domain = domain;
	r.rcpts = 1;
	r.size = 1000;
	r.action = action;
	return r;
}

/* Queue ROWS and write them to S. */
static void
write_rows(struct ag_store *s, const struct ag_msglog_row *rows, size_t n)
{
	struct ag_history *h = NULL;
	size_t written = 0;

	assert_int_equal(ag_history_new(0, &h), AG_OK);
	for (size_t i = 0; i < n; i++) {
		assert_true(ag_history_push_msg(h, &rows[i]));
	}
	assert_int_equal(ag_history_flush(h, s, &written), AG_OK);
	assert_int_equal(written, n);
	ag_history_free(h);
}

static int64_t
count_rows(struct ag_store *s, const char *where)
{
	char sql[256];
	sqlite3_stmt *st = NULL;
	int64_t n = -1;

	snprintf(sql, sizeof(sql), "SELECT count(*) FROM message_log WHERE %s",
	    where);
	assert_int_equal(sqlite3_prepare_v2(ag_store_sqlite(s), sql, -1, &st,
	    NULL), SQLITE_OK);
	if (sqlite3_step(st) == SQLITE_ROW) {
		n = sqlite3_column_int64(st, 0);
	}
	sqlite3_finalize(st);
	return n;
}

/* ---- the row ------------------------------------------------------------ */

static void
test_copy(void **state)
{
	char longkey[1000], longhelo[600];
	struct ag_msglog_row r = row(NOW, "a@example.com", "example.com",
	    NULL, "accept"), *c;

	(void)state;
	memset(longkey, 'k', sizeof(longkey) - 1);
	longkey[sizeof(longkey) - 1] = '\0';
	memset(longhelo, 'h', sizeof(longhelo) - 1);
	longhelo[sizeof(longhelo) - 1] = '\0';
	r.rate_key = longkey;
	r.helo = longhelo;
	r.spf = "pass";
	c = ag_msglog_copy(&r);
	assert_non_null(c);
	assert_ptr_not_equal(c->sender, r.sender);
	assert_string_equal(c->sender, "a@example.com");
	assert_null(c->client_ip);		/* NULL stays NULL */
	assert_null(c->dkim);
	assert_string_equal(c->spf, "pass");
	assert_int_equal(strlen(c->rate_key), AG_MSGLOG_KEY_MAX);
	assert_int_equal(strlen(c->helo), AG_MSGLOG_TEXT_MAX);
	assert_int_equal(c->time, NOW);
	free(c);
}

static void
test_write_read(void **state)
{
	struct ag_store *s = new_store("write");
	struct ag_msglog_row r = row(NOW, "", "", "2001:db8::1", "tempfail");
	sqlite3_stmt *st = NULL;

	(void)state;
	r.code = "451 4.7.1";
	r.rule = 7;
	r.reason = "rate";
	r.rate_key = "7.1:sender=x@example.com";
	r.rate_rule = 7;
	r.sasl_user = "bob";
	r.spf = "pass";
	r.spf_helo = "none";
	r.dkim = "fail";
	r.dmarc = "fail";
	r.would = NULL;
	r.trusted = true;
	r.rcpts = 3;
	r.rejected_rcpts = 2;
	r.size = UINT64_MAX;		/* saturates into SQLite's integer */
	write_rows(s, &r, 1);
	assert_int_equal(sqlite3_prepare_v2(ag_store_sqlite(s),
	    "SELECT time, qid, client_ip, sender, sender_domain, sasl_user,"
	    " rcpts, rejected_rcpts, size, action, code, rule, reason, spf,"
	    " spf_helo, dkim, dmarc, rate_key, rate_rule, would, trusted,"
	    " from_domain FROM message_log", -1, &st, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_step(st), SQLITE_ROW);
	assert_int_equal(sqlite3_column_int64(st, 0), NOW);
	assert_string_equal(sqlite3_column_text(st, 1), "4F1A2B3C");
	assert_string_equal(sqlite3_column_text(st, 2), "2001:db8::1");
	assert_string_equal(sqlite3_column_text(st, 3), "");
	assert_string_equal(sqlite3_column_text(st, 4), "");
	assert_string_equal(sqlite3_column_text(st, 5), "bob");
	assert_int_equal(sqlite3_column_int64(st, 6), 3);
	assert_int_equal(sqlite3_column_int64(st, 7), 2);
	assert_int_equal(sqlite3_column_int64(st, 8), INT64_MAX);
	assert_string_equal(sqlite3_column_text(st, 9), "tempfail");
	assert_string_equal(sqlite3_column_text(st, 10), "451 4.7.1");
	assert_int_equal(sqlite3_column_int64(st, 11), 7);
	assert_string_equal(sqlite3_column_text(st, 12), "rate");
	assert_string_equal(sqlite3_column_text(st, 13), "pass");
	assert_string_equal(sqlite3_column_text(st, 14), "none");
	assert_string_equal(sqlite3_column_text(st, 15), "fail");
	assert_string_equal(sqlite3_column_text(st, 16), "fail");
	assert_string_equal(sqlite3_column_text(st, 17),
	    "7.1:sender=x@example.com");
	assert_int_equal(sqlite3_column_int64(st, 18), 7);
	assert_int_equal(sqlite3_column_type(st, 19), SQLITE_NULL);
	assert_int_equal(sqlite3_column_int64(st, 20), 1);
	assert_int_equal(sqlite3_column_type(st, 21), SQLITE_NULL);
	assert_int_equal(sqlite3_step(st), SQLITE_DONE);
	sqlite3_finalize(st);
	ag_store_close(s);
}

static void
test_prune(void **state)
{
	struct ag_store *s = new_store("prune");
	struct ag_msglog_row rows[3] = {
		row(NOW - 31 * 86400, "a@x.example", "x.example", "192.0.2.1",
		    "accept"),
		row(NOW - 29 * 86400, "a@x.example", "x.example", "192.0.2.1",
		    "accept"),
		row(NOW, "a@x.example", "x.example", "192.0.2.1", "accept"),
	};
	size_t n = 0;

	(void)state;
	write_rows(s, rows, NELEM(rows));
	assert_int_equal(ag_history_prune(s, 30, NOW, &n), AG_OK);
	assert_int_equal(n, 1);
	assert_int_equal(count_rows(s, "1"), 2);
	assert_int_equal(ag_history_prune(s, 0, NOW, &n), AG_OK);
	assert_int_equal(n, 2);
	assert_int_equal(count_rows(s, "1"), 0);
	ag_store_close(s);
}

/* More old rows than one chunk holds: every one goes, in chunks, and the
 * count is exact. */
static void
test_prune_chunks(void **state)
{
	struct ag_store *s = new_store("chunks");
	struct ag_msglog_row keep = row(NOW, "a@x.example", "x.example",
	    "192.0.2.1", "accept");
	char sql[400];
	size_t n = 0;

	(void)state;
	write_rows(s, &keep, 1);
	snprintf(sql, sizeof(sql), "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL"
	    " SELECT i + 1 FROM c WHERE i < %d) INSERT INTO message_log (time,"
	    " qid, sender, sender_domain, rcpts, rejected_rcpts, size, action)"
	    " SELECT %lld - i, '', '', '', 1, 0, 0, 'accept' FROM c",
	    AG_STORE_DELETE_CHUNK * 2 + 500, NOW - 40 * 86400LL);
	assert_int_equal(sqlite3_exec(ag_store_sqlite(s), sql, NULL, NULL,
	    NULL), SQLITE_OK);
	assert_int_equal(ag_history_prune(s, 30, NOW, &n), AG_OK);
	assert_int_equal(n, AG_STORE_DELETE_CHUNK * 2 + 500);
	assert_int_equal(count_rows(s, "1"), 1);
	assert_int_equal(ag_history_prune(s, 30, NOW, &n), AG_OK);
	assert_int_equal(n, 0);
	ag_store_close(s);
}

/* ---- the report ------------------------------------------------------------ */

/* The set the report cases read: 10 rows at NOW .. NOW+9. */
static struct ag_store *
report_store(void)
{
	static const struct {
		const char *sender, *domain, *ip, *action, *spf, *dkim;
		const char *dmarc, *rate_key;
		int64_t rule, rate_rule;
	} d[] = {
		{ "a@one.example", "one.example", "192.0.2.1", "accept", "pass",
		  "pass", "pass", NULL, 0, 0 },
		{ "a@one.example", "one.example", "192.0.2.1", "accept", "pass",
		  "none", NULL, NULL, 0, 0 },
		{ "b@one.example", "one.example", "192.0.2.2", "reject", "fail",
		  NULL, NULL, NULL, 0, 0 },
		{ "s@two.example", "two.example", "192.0.2.9", "tempfail", NULL,
		  NULL, NULL, "3.1:sender=s@two.example", 3, 3 },
		{ "s@two.example", "two.example", "192.0.2.9", "tempfail", NULL,
		  NULL, NULL, "3.1:sender=s@two.example", 3, 3 },
		{ "s@two.example", "two.example", "192.0.2.9", "accept", "pass",
		  "fail", "fail", "3.1:sender=s@two.example", 0, 3 },
		{ "", "", NULL, "accept", "none", NULL, NULL, NULL, 0, 0 },
		{ "c@three.example", "three.example", "192.0.2.3", "abort",
		  "pass", NULL, NULL, NULL, 0, 0 },
		{ "c@three.example", "three.example", "192.0.2.3", "discard",
		  "pass", NULL, NULL, NULL, 5, 0 },
		{ "\x1b[2J<evil>", "", "192.0.2.3", "quarantine", "pass",
		  NULL, NULL, NULL, 0, 0 },
	};
	struct ag_msglog_row rows[NELEM(d)];
	struct ag_store *s = new_store("report");

	for (size_t i = 0; i < NELEM(d); i++) {
		rows[i] = row(NOW + (int64_t)i, d[i].sender, d[i].domain,
		    d[i].ip, d[i].action);
		rows[i].spf = d[i].spf;
		rows[i].dkim = d[i].dkim;
		rows[i].dmarc = d[i].dmarc;
		rows[i].rate_key = d[i].rate_key;
		rows[i].rule = d[i].rule;
		rows[i].rate_rule = d[i].rate_rule;
	}
	write_rows(s, rows, NELEM(rows));
	return s;
}

static struct ag_msglog_report *
run_report(struct ag_store *s, enum ag_msglog_by by, enum ag_msglog_only only,
    int64_t begin, int64_t end, size_t top)
{
	struct ag_msglog_query q = { begin, end, by, only, top };
	struct ag_msglog_report *r = NULL;

	assert_int_equal(ag_msglog_report(s, &q, &r), AG_OK);
	assert_non_null(r);
	return r;
}

static const struct ag_msglog_group *
group(const struct ag_msglog_report *r, const char *key)
{
	for (size_t i = 0; i < r->n; i++) {
		if (strcmp(r->groups[i].key, key) == 0) {
			return &r->groups[i];
		}
	}
	fail_msg("no group '%s'", key);
	return NULL;
}

static void
test_report_totals(void **state)
{
	struct ag_store *s = report_store();
	struct ag_msglog_report *r;
	const struct ag_msglog_counts *t;

	(void)state;
	r = run_report(s, AG_BY_SENDER_DOMAIN, AG_ONLY_ALL, NOW, NOW + 10, 0);
	t = &r->total;
	assert_int_equal(t->messages, 10);
	assert_int_equal(t->accepted, 5);	/* accept 4 + quarantine */
	assert_int_equal(t->tempfailed, 2);
	assert_int_equal(t->rejected, 2);	/* reject + discard */
	assert_int_equal(t->aborted, 1);
	assert_int_equal(t->spf_fail, 1);
	assert_int_equal(t->dkim_fail, 1);
	assert_int_equal(t->dmarc_fail, 1);
	assert_int_equal(t->limited, 3);
	assert_int_equal(t->rcpts, 10);
	assert_int_equal(t->bytes, 10000);
	assert_int_equal(t->first, NOW);
	assert_int_equal(t->last, NOW + 9);
	assert_int_equal(r->ngroups, 5);
	assert_int_equal(r->n, 5);
	/* largest first, ties by key */
	assert_string_equal(r->groups[0].key, "one.example");
	assert_string_equal(r->groups[1].key, "two.example");
	assert_string_equal(r->groups[2].key, "three.example");
	assert_string_equal(r->groups[3].key, "-");	/* bad sender */
	assert_string_equal(r->groups[4].key, "<>");
	assert_int_equal(group(r, "two.example")->c.limited, 3);
	assert_int_equal(group(r, "two.example")->c.tempfailed, 2);
	ag_msglog_report_free(r);

	/* the period: begin included, end excluded */
	r = run_report(s, AG_BY_SENDER_DOMAIN, AG_ONLY_ALL, NOW + 1, NOW + 3, 0);
	assert_int_equal(r->total.messages, 2);
	assert_int_equal(r->total.first, NOW + 1);
	ag_msglog_report_free(r);
	r = run_report(s, AG_BY_SENDER_DOMAIN, AG_ONLY_ALL, NOW + 100,
	    NOW + 200, 0);
	assert_int_equal(r->total.messages, 0);
	assert_int_equal(r->ngroups, 0);
	assert_int_equal(r->n, 0);
	ag_msglog_report_free(r);
	/* --top */
	r = run_report(s, AG_BY_SENDER_DOMAIN, AG_ONLY_ALL, NOW, NOW + 10, 2);
	assert_int_equal(r->n, 2);
	assert_int_equal(r->ngroups, 5);
	ag_msglog_report_free(r);
	ag_store_close(s);
}

static void
test_report_by(void **state)
{
	struct ag_store *s = report_store();
	struct ag_msglog_report *r;

	(void)state;
	r = run_report(s, AG_BY_SENDER, AG_ONLY_ALL, NOW, NOW + 10, 0);
	assert_int_equal(group(r, "s@two.example")->c.messages, 3);
	assert_int_equal(group(r, "<>")->c.messages, 1);
	/* a hostile key comes back as stored: escaping is the printer's */
	assert_int_equal(group(r, "\x1b[2J<evil>")->c.accepted, 1);
	ag_msglog_report_free(r);

	r = run_report(s, AG_BY_CLIENT, AG_ONLY_ALL, NOW, NOW + 10, 0);
	assert_int_equal(group(r, "unknown")->c.messages, 1);
	assert_int_equal(group(r, "192.0.2.3")->c.messages, 3);
	ag_msglog_report_free(r);

	r = run_report(s, AG_BY_RULE, AG_ONLY_ALL, NOW, NOW + 10, 0);
	assert_int_equal(group(r, "3")->c.messages, 3);	/* tag hit too */
	assert_int_equal(group(r, "5")->c.rejected, 1);
	assert_int_equal(group(r, "-")->c.messages, 6);
	ag_msglog_report_free(r);

	r = run_report(s, AG_BY_RESULT, AG_ONLY_ALL, NOW, NOW + 10, 0);
	assert_int_equal(group(r, "spf=pass dkim=- dmarc=-")->c.messages, 3);
	assert_int_equal(group(r, "spf=- dkim=- dmarc=-")->c.tempfailed, 2);
	assert_int_equal(group(r, "spf=pass dkim=fail dmarc=fail")->c.limited,
	    1);
	ag_msglog_report_free(r);

	r = run_report(s, AG_BY_SASL_USER, AG_ONLY_ALL, NOW, NOW + 10, 0);
	assert_int_equal(r->n, 1);
	assert_string_equal(r->groups[0].key, "-");
	ag_msglog_report_free(r);
	ag_store_close(s);
}

static void
test_report_only(void **state)
{
	static const struct {
		enum ag_msglog_only only;
		uint64_t messages;
	} t[] = {
		{ AG_ONLY_ALL, 10 }, { AG_ONLY_ACCEPTED, 5 },
		{ AG_ONLY_TEMPFAILED, 2 }, { AG_ONLY_REJECTED, 2 },
		{ AG_ONLY_ABORTED, 1 }, { AG_ONLY_LIMITED, 3 },
		{ AG_ONLY_AUTH_FAIL, 2 },
	};
	struct ag_store *s = report_store();

	(void)state;
	for (size_t i = 0; i < NELEM(t); i++) {
		struct ag_msglog_report *r = run_report(s, AG_BY_SENDER,
		    t[i].only, NOW, NOW + 10, 0);

		if (r->total.messages != t[i].messages) {
			fail_msg("--only %s: %llu messages, expected %llu",
			    ag_msglog_only_name(t[i].only),
			    (unsigned long long)r->total.messages,
			    (unsigned long long)t[i].messages);
		}
		ag_msglog_report_free(r);
	}
	ag_store_close(s);
}

static void
test_report_errors(void **state)
{
	struct ag_store *s = new_store("errors");
	struct ag_msglog_query q = { NOW, NOW + 1, (enum ag_msglog_by)99,
		AG_ONLY_ALL, 0 };
	struct ag_msglog_report *r = NULL;

	(void)state;
	assert_int_equal(ag_msglog_report(s, &q, &r), AG_INVALID);
	assert_null(r);
	q.by = AG_BY_CLIENT;
	q.only = (enum ag_msglog_only)99;
	assert_int_equal(ag_msglog_report(s, &q, &r), AG_INVALID);
	q.only = AG_ONLY_ALL;
	assert_int_equal(sqlite3_exec(ag_store_sqlite(s),
	    "DROP TABLE message_log", NULL, NULL, NULL), SQLITE_OK);
	assert_int_not_equal(ag_msglog_report(s, &q, &r), AG_OK);
	assert_null(r);
	assert_non_null(strstr(ag_store_errstr(s), "message history"));
	ag_store_close(s);
}

/* ---- names and times ------------------------------------------------------- */

static void
test_names(void **state)
{
	static const char *const by[] = { "sender-domain", "sender", "client",
		"sasl-user", "rule", "result" };
	static const char *const only[] = { "all", "accepted", "tempfailed",
		"rejected", "aborted", "limited", "auth-fail" };
	enum ag_msglog_by b;
	enum ag_msglog_only o;

	(void)state;
	for (size_t i = 0; i < NELEM(by); i++) {
		assert_int_equal(ag_msglog_by_parse(by[i], &b), 0);
		assert_string_equal(ag_msglog_by_name(b), by[i]);
	}
	for (size_t i = 0; i < NELEM(only); i++) {
		assert_int_equal(ag_msglog_only_parse(only[i], &o), 0);
		assert_string_equal(ag_msglog_only_name(o), only[i]);
	}
	assert_int_equal(ag_msglog_by_parse("Sender", &b), -1);
	assert_int_equal(ag_msglog_by_parse("", &b), -1);
	assert_int_equal(ag_msglog_by_parse(NULL, &b), -1);
	assert_int_equal(ag_msglog_only_parse("limit", &o), -1);
	assert_string_equal(ag_msglog_by_name((enum ag_msglog_by)42),
	    "unknown");
}

static void
test_parse_since(void **state)
{
	static const struct {
		const char *in;
		ag_status st;
		int64_t out;
	} t[] = {
		{ "30s", AG_OK, NOW - 30 }, { "90m", AG_OK, NOW - 5400 },
		{ "2h", AG_OK, NOW - 7200 }, { "7d", AG_OK, NOW - 604800 },
		{ "1w", AG_OK, NOW - 604800 }, { "0h", AG_OK, NOW },
		{ "9999999d", AG_OK, NOW - 9999999LL * 86400 },
		{ "1700000000", AG_OK, 1700000000 },
		{ "2023-11-14", AG_OK, 1699920000 },
		{ "2023-11-14T22:13:20Z", AG_OK, 1700000000 },
		{ "h", AG_INVALID, 0 }, { "2y", AG_INVALID, 0 },
		{ "-2h", AG_INVALID, 0 }, { "2 h", AG_INVALID, 0 },
		{ "2hh", AG_INVALID, 0 }, { "99999999d", AG_INVALID, 0 },
		{ "", AG_INVALID, 0 }, { "yesterday", AG_INVALID, 0 },
	};

	(void)state;
	for (size_t i = 0; i < NELEM(t); i++) {
		int64_t out = -1;
		ag_status st = ag_msglog_parse_since(t[i].in, NOW, &out);

		if (st != t[i].st || (st == AG_OK && out != t[i].out)) {
			fail_msg("'%s': status %d, %lld; expected %d, %lld",
			    t[i].in, st, (long long)out, t[i].st,
			    (long long)t[i].out);
		}
	}
}

/* ---- the group --------------------------------------------------------------- */

static int
group_setup(void **state)
{
	(void)state;
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/t_msglog.XXXXXX");
	return mkdtemp(tmpdir) != NULL ? 0 : -1;
}

static int
group_teardown(void **state)
{
	DIR *d = opendir(tmpdir);
	struct dirent *e;
	char path[512];

	(void)state;
	while (d != NULL && (e = readdir(d)) != NULL) {
		if (e->d_name[0] != '.') {
			snprintf(path, sizeof(path), "%s/%s", tmpdir, e->d_name);
			unlink(path);
		}
	}
	if (d != NULL) {
		closedir(d);
	}
	return rmdir(tmpdir);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_copy),
		cmocka_unit_test(test_write_read),
		cmocka_unit_test(test_prune),
		cmocka_unit_test(test_prune_chunks),
		cmocka_unit_test(test_report_totals),
		cmocka_unit_test(test_report_by),
		cmocka_unit_test(test_report_only),
		cmocka_unit_test(test_report_errors),
		cmocka_unit_test(test_names),
		cmocka_unit_test(test_parse_since),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}

/*
 * t_history.c - unit tests for lib/history.c: the queue's bound and drop
 * count, writing rows to a real SQLite store in a temporary directory and
 * reading them back, a batch that fails on a locked database and stays
 * queued, pruning by HistoryDays with an injected "now", the aggregate
 * report (grouping, counts, the period, the policy published, XML
 * escaping of network values, IPv6 in the form the RFC 7489 schema
 * accepts, a corrupt row), the XML escaper and the report period parser
 * (table-driven), that history writes never move policy_version, and
 * sessions pushing from many threads while the writer flushes (every
 * row written or counted as dropped, none twice).
 *
 * When xmllint is installed and AG_SRCDIR is set, the reports written
 * here are also validated against tests/dmarc/rua.xsd.
 *
 * All cases run as one cmocka group (one TAP plan); the group setup makes
 * the directory and the teardown removes it.
 */
#include <dirent.h>
#include <pthread.h>
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
#include "store.h"

#define TIMEOUT_MS 100
#define NOW 1700000000LL	/* 2023-11-14T22:13:20Z */
#define DAY 86400LL
#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

static char tmpdir[256];

/* ---- helpers ---------------------------------------------------------- */

/* A fresh store at a new path for case NAME (closed by the caller). */
static struct ag_store *
new_store(const char *name, char *path, size_t pathsz)
{
	struct ag_store *s = NULL;
	ag_status st;

	snprintf(path, pathsz, "%s/%s.db", tmpdir, name);
	unlink(path);
	st = ag_store_open(path, AG_STORE_CREATE, TIMEOUT_MS, &s);
	if (st != AG_OK) {
		fail_msg("%s: cannot create %s: %s", name, path,
		    ag_store_errstr(s));
	}
	return s;
}

/* One integer from SQL on PATH through a plain connection. */
static int64_t
raw_int(const char *path, const char *sql)
{
	sqlite3 *db = NULL;
	sqlite3_stmt *st = NULL;
	int64_t v = -1;

	if (sqlite3_open(path, &db) != SQLITE_OK ||
	    sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
		fail_msg("raw sqlite on %s: %s: %s", path, sql,
		    sqlite3_errmsg(db));
	}
	if (sqlite3_step(st) == SQLITE_ROW) {
		v = sqlite3_column_int64(st, 0);
	}
	sqlite3_finalize(st);
	sqlite3_close(db);
	return v;
}

/* One text value from SQL on PATH, copied into BUF ("(null)" for NULL). */
static const char *
raw_text(const char *path, const char *sql, char *buf, size_t bufsz)
{
	sqlite3 *db = NULL;
	sqlite3_stmt *st = NULL;

	snprintf(buf, bufsz, "(no row)");
	if (sqlite3_open(path, &db) != SQLITE_OK ||
	    sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
		fail_msg("raw sqlite on %s: %s: %s", path, sql,
		    sqlite3_errmsg(db));
	}
	if (sqlite3_step(st) == SQLITE_ROW) {
		const unsigned char *t = sqlite3_column_text(st, 0);

		snprintf(buf, bufsz, "%s", t != NULL ? (const char *)t :
		    "(null)");
	}
	sqlite3_finalize(st);
	sqlite3_close(db);
	return buf;
}

/* Run SQL on PATH through a plain connection. */
static void
raw_exec(const char *path, const char *sql)
{
	sqlite3 *db = NULL;
	char *err = NULL;

	if (sqlite3_open(path, &db) != SQLITE_OK ||
	    sqlite3_exec(db, sql, NULL, NULL, &err) != SQLITE_OK) {
		fail_msg("raw sqlite on %s: %s: %s", path, sql,
		    err ? err : sqlite3_errmsg(db));
	}
	sqlite3_close(db);
}

/* A row that failed DMARC at example.com (p=reject, rejected). */
static struct ag_history_row
row_fail(int64_t t, const char *ip)
{
	struct ag_history_row r;

	memset(&r, 0, sizeof(r));
	r.time = t;
	r.source_ip = ip;
	r.header_from = "example.com";
	r.envelope_from = "example.net";
	r.policy_domain = "example.com";
	r.p = AG_DMARC_P_REJECT;
	r.sp = AG_DMARC_P_REJECT;
	r.pct = 100;
	r.fo = AG_DMARC_FO_0;
	r.result = AG_DMARC_FAIL;
	r.disposition = AG_DMARC_P_REJECT;
	r.spf_domain = "example.net";
	r.spf_scope = AG_SPF_MAILFROM;
	r.spf_result = AG_SPF_PASS;
	return r;
}

/* A row that passed DMARC at example.com through SPF. */
static struct ag_history_row
row_pass(int64_t t, const char *ip)
{
	struct ag_history_row r = row_fail(t, ip);

	r.envelope_from = "example.com";
	r.spf_domain = "example.com";
	r.result = AG_DMARC_PASS;
	r.disposition = AG_DMARC_P_NONE;
	r.spf_aligned = true;
	return r;
}

/* Push ROW, requiring that it is queued. */
static void
push_ok(const char *label, struct ag_history *h, const struct ag_history_row *r)
{
	if (!ag_history_push(h, r)) {
		fail_msg("%s: push refused (pending %zu, dropped %llu)", label,
		    ag_history_pending(h),
		    (unsigned long long)ag_history_dropped(h));
	}
}

/* Flush H to S, requiring that N rows are written. */
static void
flush_ok(const char *label, struct ag_history *h, struct ag_store *s,
    size_t want)
{
	size_t n = 0;
	ag_status st = ag_history_flush(h, s, &n);

	if (st != AG_OK || n != want) {
		fail_msg("%s: flush gave %s (%s), %zu rows, want OK and %zu",
		    label, ag_status_str(st), ag_store_errstr(s), n, want);
	}
}

/* The report of DOMAIN for [BEGIN, END) as a string (free it); *ST set. */
static char *
report(struct ag_store *s, const char *domain, int64_t begin, int64_t end,
    ag_status *st, size_t *nrec)
{
	struct ag_history_report_opts o = { domain, begin, end,
		"Example Receiver & Co", "postmaster@mx.example.net",
		"example.com!1!2" };
	char *buf = NULL;
	size_t len = 0;
	FILE *fp = open_memstream(&buf, &len);

	assert_non_null(fp);
	*st = ag_history_report(s, &o, fp, nrec);
	fclose(fp);
	return buf;
}

/* Require NEEDLE in the report TEXT exactly N times. */
static void
count_in(const char *label, const char *text, const char *needle, int n)
{
	int k = 0;

	for (const char *p = text; (p = strstr(p, needle)) != NULL; p++) {
		k++;
	}
	if (k != n) {
		fail_msg("%s: '%s' occurs %d times, want %d in:\n%s", label,
		    needle, k, n, text);
	}
}

/* Validate TEXT against tests/dmarc/rua.xsd with xmllint, when there. */
static void
schema_valid(const char *label, const char *text)
{
	const char *src = getenv("AG_SRCDIR");
	char path[512], cmd[1536];
	FILE *fp;
	int rc;

	if (src == NULL || access("/usr/bin/xmllint", X_OK) != 0) {
		printf("# %s: not validated (xmllint or AG_SRCDIR missing)\n",
		    label);
		return;
	}
	snprintf(path, sizeof(path), "%s/report.xml", tmpdir);
	fp = fopen(path, "w");
	assert_non_null(fp);
	fputs(text, fp);
	fclose(fp);
	snprintf(cmd, sizeof(cmd), "/usr/bin/xmllint --noout --schema "
	    "'%s/tests/dmarc/rua.xsd' '%s' 2>'%s/xmllint.err'", src, path,
	    tmpdir);
	rc = system(cmd);
	if (rc != 0) {
		char err[1024] = "";
		FILE *ef;

		snprintf(path, sizeof(path), "%s/xmllint.err", tmpdir);
		if ((ef = fopen(path, "r")) != NULL) {
			err[fread(err, 1, sizeof(err) - 1, ef)] = '\0';
			fclose(ef);
		}
		fail_msg("%s: the report does not validate against rua.xsd: "
		    "%s\n%s", label, err, text);
	}
}

/* ---- the queue ---------------------------------------------------------- */

static void
test_queue_bound(void **state)
{
	struct ag_history *h = NULL;
	struct ag_history_row r = row_pass(NOW, "192.0.2.1");
	struct ag_store *s;
	char path[512];

	(void)state;
	assert_int_equal(ag_history_new(3, &h), AG_OK);
	for (int i = 0; i < 3; i++) {
		push_ok("bound: room", h, &r);
	}
	if (ag_history_push(h, &r) || ag_history_push(h, &r)) {
		fail_msg("bound: a push past the bound was queued");
	}
	assert_int_equal(ag_history_pending(h), 3);
	assert_int_equal(ag_history_dropped(h), 2);
	s = new_store("bound", path, sizeof(path));
	flush_ok("bound: flush", h, s, 3);
	assert_int_equal(ag_history_pending(h), 0);
	push_ok("bound: room again after the flush", h, &r);
	assert_int_equal(ag_history_dropped(h), 2);
	flush_ok("bound: second flush", h, s, 1);
	assert_int_equal(raw_int(path, "SELECT count(*) FROM dmarc_result"), 4);
	ag_store_close(s);
	ag_history_free(h);
	ag_history_free(NULL);
}

/* More than one batch; order kept; the default bound. */
static void
test_queue_batches(void **state)
{
	struct ag_history *h = NULL;
	struct ag_store *s;
	char path[512];
	size_t n = AG_HISTORY_BATCH * 2 + 7;

	(void)state;
	assert_int_equal(ag_history_new(0, &h), AG_OK);
	for (size_t i = 0; i < n; i++) {
		struct ag_history_row r = row_pass(NOW + (int64_t)i,
		    "192.0.2.1");

		push_ok("batches", h, &r);
	}
	s = new_store("batches", path, sizeof(path));
	flush_ok("batches", h, s, n);
	assert_int_equal(raw_int(path, "SELECT count(*) FROM dmarc_result"),
	    (int64_t)n);
	/* queued order is id order */
	assert_int_equal(raw_int(path, "SELECT count(*) FROM dmarc_result a "
	    "JOIN dmarc_result b ON b.id = a.id + 1 WHERE b.time < a.time"), 0);
	ag_store_close(s);
	ag_history_free(h);
}

/* Many threads push while one flushes: every row is written or dropped. */
#define PUSHERS 8
#define PUSHES 2000

static void *
pusher(void *arg)
{
	struct ag_history *h = arg;

	for (int i = 0; i < PUSHES; i++) {
		struct ag_history_row r = row_pass(NOW + i, "192.0.2.1");

		(void)ag_history_push(h, &r);
	}
	return NULL;
}

static void
test_queue_threads(void **state)
{
	pthread_t t[PUSHERS];
	struct ag_history *h = NULL;
	struct ag_store *s;
	char path[512];
	size_t n, written = 0;

	(void)state;
	assert_int_equal(ag_history_new(1000, &h), AG_OK);
	s = new_store("threads", path, sizeof(path));
	for (int i = 0; i < PUSHERS; i++) {
		assert_int_equal(pthread_create(&t[i], NULL, pusher, h), 0);
	}
	for (int i = 0; i < 50; i++) {
		assert_int_equal(ag_history_flush(h, s, &n), AG_OK);
		written += n;
	}
	for (int i = 0; i < PUSHERS; i++) {
		pthread_join(t[i], NULL);
	}
	assert_int_equal(ag_history_flush(h, s, &n), AG_OK);
	written += n;
	assert_int_equal(ag_history_pending(h), 0);
	if (written + ag_history_dropped(h) != PUSHERS * PUSHES) {
		fail_msg("threads: %zu written + %llu dropped != %d pushed",
		    written, (unsigned long long)ag_history_dropped(h),
		    PUSHERS * PUSHES);
	}
	assert_int_equal(raw_int(path, "SELECT count(*) FROM dmarc_result"),
	    (int64_t)written);
	ag_store_close(s);
	ag_history_free(h);
}

/* ---- writing and reading back ------------------------------------------ */

static void
test_write_read_back(void **state)
{
	struct ag_history_dkim sigs[AG_HISTORY_DKIM_MAX + 2];
	struct ag_history *h = NULL;
	struct ag_history_row r;
	struct ag_store *s;
	char path[512], buf[2048];
	const char *want_dkim = "pass:example.org:a%3Ab%20%25c%20d "
	    "fail:example.com:s1 ";

	(void)state;
	assert_int_equal(ag_history_new(16, &h), AG_OK);
	s = new_store("readback", path, sizeof(path));

	/* a fail with DKIM signatures, one with a hostile selector */
	r = row_fail(NOW, "2001:db8::1");
	r.p = AG_DMARC_P_QUARANTINE;
	r.sp = AG_DMARC_P_NONE;
	r.pct = 50;
	r.adkim_strict = true;
	r.fo = AG_DMARC_FO_1 | AG_DMARC_FO_D;
	r.disposition = AG_DMARC_P_NONE;
	r.sampled_out = true;
	r.reason = "local_policy";
	r.reason_comment = "exempted by a local rule";
	for (size_t i = 0; i < NELEM(sigs); i++) {
		sigs[i] = (struct ag_history_dkim){ "example.com", "s1",
		    AG_DKIM_FAIL };
	}
	sigs[0] = (struct ag_history_dkim){ "example.org", "a:b %c d",
	    AG_DKIM_PASS };
	r.dkim = sigs;
	r.ndkim = NELEM(sigs);
	push_ok("readback: fail", h, &r);

	/* no record, no SPF, null sender, a From that could not be read */
	memset(&r, 0, sizeof(r));
	r.time = NOW + 1;
	r.source_ip = "192.0.2.7";
	r.result = AG_DMARC_PERMERROR;
	push_ok("readback: permerror", h, &r);
	flush_ok("readback", h, s, 2);

	raw_text(path, "SELECT dkim FROM dmarc_result WHERE id = 1", buf,
	    sizeof(buf));
	if (strncmp(buf, want_dkim, strlen(want_dkim)) != 0) {
		fail_msg("readback: dkim column '%s', want it to start with "
		    "'%s'", buf, want_dkim);
	}
	assert_int_equal(raw_int(path, "SELECT length(dkim) - "
	    "length(replace(dkim, ' ', '')) + 1 FROM dmarc_result WHERE "
	    "id = 1"), AG_HISTORY_DKIM_MAX);
	assert_string_equal(raw_text(path, "SELECT p || ',' || sp || ',' || "
	    "pct || ',' || adkim || ',' || aspf || ',' || fo || ',' || result "
	    "|| ',' || disposition || ',' || sampled_out || ',' || reason || "
	    "',' || spf_scope || ',' || spf_result FROM dmarc_result WHERE "
	    "id = 1", buf, sizeof(buf)),
	    "quarantine,none,50,s,r,1:d,fail,none,1,local_policy,mfrom,pass");
	assert_string_equal(raw_text(path, "SELECT source_ip FROM dmarc_result "
	    "WHERE id = 1", buf, sizeof(buf)), "2001:db8::1");
	/* absent parts are NULL, not empty names */
	assert_int_equal(raw_int(path, "SELECT count(*) FROM dmarc_result "
	    "WHERE id = 2 AND policy_domain IS NULL AND p IS NULL AND "
	    "spf_domain IS NULL AND spf_result IS NULL AND reason IS NULL AND "
	    "header_from = '' AND envelope_from = '' AND dkim = '' AND "
	    "result = 'permerror' AND disposition = 'none'"), 1);
	ag_store_close(s);
	ag_history_free(h);
}

/* A locked database: the batch stays queued, and is written later. */
static void
test_flush_locked(void **state)
{
	struct ag_history *h = NULL;
	struct ag_history_row r = row_pass(NOW, "192.0.2.1");
	struct ag_store *s;
	sqlite3 *locker = NULL;
	char path[512];
	size_t n = 99;
	ag_status st;

	(void)state;
	assert_int_equal(ag_history_new(8, &h), AG_OK);
	s = new_store("locked", path, sizeof(path));
	push_ok("locked", h, &r);
	push_ok("locked", h, &r);
	assert_int_equal(sqlite3_open(path, &locker), SQLITE_OK);
	assert_int_equal(sqlite3_exec(locker, "BEGIN EXCLUSIVE", NULL, NULL,
	    NULL), SQLITE_OK);
	st = ag_history_flush(h, s, &n);
	if (st != AG_TEMPFAIL || n != 0 ||
	    strstr(ag_store_errstr(s), "locked") == NULL) {
		fail_msg("locked: flush gave %s (%s), %zu rows; want TEMPFAIL, "
		    "'locked', 0 rows", ag_status_str(st), ag_store_errstr(s), n);
	}
	assert_int_equal(ag_history_pending(h), 2);
	sqlite3_exec(locker, "ROLLBACK", NULL, NULL, NULL);
	sqlite3_close(locker);
	flush_ok("locked: after the lock is gone", h, s, 2);
	ag_store_close(s);
	ag_history_free(h);
}

/* Writes move neither policy_version nor have triggers of their own. */
static void
test_no_policy_reload(void **state)
{
	struct ag_history *h = NULL;
	struct ag_history_row r = row_fail(NOW, "192.0.2.1");
	struct ag_store *s;
	int64_t before = -1, after = -2;
	char path[512];

	(void)state;
	assert_int_equal(ag_history_new(8, &h), AG_OK);
	s = new_store("version", path, sizeof(path));
	assert_int_equal(ag_store_policy_version(s, &before), AG_OK);
	push_ok("version", h, &r);
	flush_ok("version", h, s, 1);
	assert_int_equal(ag_history_prune(s, 0, NOW, NULL), AG_OK);
	assert_int_equal(ag_store_policy_version(s, &after), AG_OK);
	assert_int_equal(before, after);
	assert_int_equal(raw_int(path, "SELECT count(*) FROM sqlite_master "
	    "WHERE type = 'trigger' AND tbl_name = 'dmarc_result'"), 0);
	assert_int_equal(raw_int(path, "PRAGMA user_version"),
	    AG_STORE_SCHEMA_VERSION);
	ag_store_close(s);
	ag_history_free(h);
}

/* ---- pruning -------------------------------------------------------------- */

static void
test_prune(void **state)
{
	static const int64_t ages[] = { 40 * DAY, 30 * DAY + 1, 30 * DAY,
		29 * DAY, 0 };
	struct ag_history *h = NULL;
	struct ag_store *s;
	char path[512];
	size_t n = 99;

	(void)state;
	assert_int_equal(ag_history_new(8, &h), AG_OK);
	s = new_store("prune", path, sizeof(path));
	for (size_t i = 0; i < NELEM(ages); i++) {
		struct ag_history_row r = row_pass(NOW - ages[i], "192.0.2.1");

		push_ok("prune", h, &r);
	}
	flush_ok("prune", h, s, NELEM(ages));
	/* HistoryDays 30: older than 30 days goes; exactly 30 days stays */
	assert_int_equal(ag_history_prune(s, 30, NOW, &n), AG_OK);
	assert_int_equal(n, 2);
	assert_int_equal(raw_int(path, "SELECT count(*) FROM dmarc_result"), 3);
	assert_int_equal(raw_int(path, "SELECT min(time) FROM dmarc_result"),
	    NOW - 30 * DAY);
	/* nothing more to do at the same time */
	assert_int_equal(ag_history_prune(s, 30, NOW, &n), AG_OK);
	assert_int_equal(n, 0);
	/* a day later, the 30-day-old row goes */
	assert_int_equal(ag_history_prune(s, 30, NOW + DAY, &n), AG_OK);
	assert_int_equal(n, 1);
	/* HistoryDays 0 keeps none */
	assert_int_equal(ag_history_prune(s, 0, NOW, &n), AG_OK);
	assert_int_equal(n, 2);
	assert_int_equal(raw_int(path, "SELECT count(*) FROM dmarc_result"), 0);
	ag_store_close(s);
	ag_history_free(h);
}

/* ---- the report ------------------------------------------------------------ */

/* Rows for the report cases, written to a new store at PATH. */
static struct ag_store *
report_store(const char *name, char *path, size_t pathsz)
{
	static const struct ag_history_dkim sig_ok[] = {
		{ "example.com", "sel1", AG_DKIM_PASS },
	};
	static const struct ag_history_dkim sig_nasty[] = {
		{ "example.net", "a&b<c>\"'\\\x01\xff\xc3\xa9", AG_DKIM_FAIL },
		{ "example.org", "", AG_DKIM_NONE },
	};
	struct ag_history *h = NULL;
	struct ag_history_row r;
	struct ag_store *s = new_store(name, path, pathsz);

	assert_int_equal(ag_history_new(64, &h), AG_OK);
	/* two identical passes from one IP: one record, count 2 */
	r = row_pass(NOW + 10, "192.0.2.10");
	push_ok(name, h, &r);
	r.time = NOW + 20;
	push_ok(name, h, &r);
	/* a pass by DKIM from an IPv6 client */
	r = row_pass(NOW + 30, "2001:db8::25");
	r.spf_aligned = false;
	r.spf_domain = "example.net";
	r.envelope_from = "example.net";
	r.dkim_aligned = true;
	r.dkim = sig_ok;
	r.ndkim = NELEM(sig_ok);
	push_ok(name, h, &r);
	/* three rejected failures from another IP */
	for (int i = 0; i < 3; i++) {
		r = row_fail(NOW + 40 + i, "198.51.100.20");
		push_ok(name, h, &r);
	}
	/* a subdomain whose policy was found at example.com (sp), with
	 * hostile DKIM values; the newest row with p=quarantine */
	r = row_fail(NOW + 50, "198.51.100.20");
	r.header_from = "mail.example.com";
	r.p = AG_DMARC_P_QUARANTINE;
	r.sp = AG_DMARC_P_REJECT;
	r.pct = 100;
	r.aspf_strict = true;
	r.dkim = sig_nasty;
	r.ndkim = NELEM(sig_nasty);
	r.spf_domain = NULL;	/* SPF not checked: reported as none */
	push_ok(name, h, &r);
	/* From example.com, record found at its parent (org domain):
	 * matched on header_from; a newer policy elsewhere must not win */
	r = row_fail(NOW + 55, "192.0.2.99");
	r.policy_domain = "other.example";
	r.p = AG_DMARC_P_NONE;
	r.disposition = AG_DMARC_P_NONE;
	push_ok(name, h, &r);
	/* another domain: never in example.com's report */
	r = row_pass(NOW + 60, "192.0.2.10");
	r.header_from = "example.org";
	r.policy_domain = "example.org";
	push_ok(name, h, &r);
	/* outside the period */
	r = row_pass(NOW - 1, "192.0.2.10");
	push_ok(name, h, &r);
	r = row_pass(NOW + 1000, "192.0.2.10");
	push_ok(name, h, &r);
	flush_ok(name, h, s, 11);
	ag_history_free(h);
	return s;
}

static void
test_report(void **state)
{
	struct ag_store *s;
	char path[512], *x;
	size_t nrec = 0;
	ag_status st;

	(void)state;
	s = report_store("report", path, sizeof(path));
	x = report(s, "example.com", NOW, NOW + 1000, &st, &nrec);
	if (st != AG_OK) {
		fail_msg("report: %s (%s)", ag_status_str(st), ag_store_errstr(s));
	}
	assert_int_equal(nrec, 5);
	count_in("report: records", x, "<record>", 5);
	count_in("report: version", x, "<version>1.0</version>", 1);
	count_in("report: org_name escaped", x,
	    "<org_name>Example Receiver &amp; Co</org_name>", 1);
	count_in("report: date_range end is the last second", x,
	    "<end>1700000999</end>", 1);
	count_in("report: begin", x, "<begin>1700000000</begin>", 1);
	/* the most recent row with a record at example.com itself */
	count_in("report: policy_published p", x, "<p>quarantine</p>", 1);
	count_in("report: policy_published sp", x, "<sp>reject</sp>", 1);
	count_in("report: policy_published aspf", x, "<aspf>s</aspf>", 1);
	count_in("report: policy_published domain", x,
	    "<domain>example.com</domain>\n    <adkim>r</adkim>", 1);
	count_in("report: fo", x, "<fo>0</fo>", 1);
	/* grouping */
	count_in("report: two passes in one record", x,
	    "<source_ip>192.0.2.10</source_ip>\n      <count>2</count>", 1);
	count_in("report: three rejections in one record", x,
	    "<source_ip>198.51.100.20</source_ip>\n      <count>3</count>", 1);
	count_in("report: disposition reject", x,
	    "<disposition>reject</disposition>", 2);
	count_in("report: IPv6 in full", x,
	    "<source_ip>2001:db8:0:0:0:0:0:25</source_ip>", 1);
	count_in("report: subdomain row", x,
	    "<header_from>mail.example.com</header_from>", 1);
	count_in("report: header_from match with a policy elsewhere", x,
	    "<source_ip>192.0.2.99</source_ip>", 1);
	count_in("report: other domain left out", x, "example.org</header", 0);
	count_in("report: DKIM selector", x, "<selector>sel1</selector>", 1);
	count_in("report: hostile selector escaped", x,
	    "<selector>a&amp;b&lt;c&gt;&quot;&apos;\\\\\\x01\\xff\xc3\xa9"
	    "</selector>", 1);
	count_in("report: empty selector left out", x,
	    "<domain>example.org</domain>\n        <result>none</result>", 1);
	count_in("report: SPF not checked is none for the MAIL FROM domain",
	    x, "<domain>example.net</domain>\n        <scope>mfrom</scope>\n"
	    "        <result>none</result>", 1);
	count_in("report: no error element", x, "<error>", 0);
	schema_valid("report", x);
	free(x);

	/* example.org: its own record only */
	x = report(s, "example.org", NOW, NOW + 1000, &st, &nrec);
	assert_int_equal(st, AG_OK);
	assert_int_equal(nrec, 1);
	count_in("report example.org: policy", x,
	    "<domain>example.org</domain>", 1);
	schema_valid("report example.org", x);
	free(x);
	ag_store_close(s);
}

static void
test_report_empty(void **state)
{
	struct ag_store *s;
	char path[512], *x;
	size_t nrec = 99;
	ag_status st;

	(void)state;
	s = report_store("empty", path, sizeof(path));
	x = report(s, "example.net", NOW, NOW + 1000, &st, &nrec);
	assert_int_equal(st, AG_NOTFOUND);
	assert_int_equal(nrec, 0);
	assert_string_equal(x, "");
	free(x);
	/* example.com, but a period with nothing in it */
	x = report(s, "example.com", NOW + 2000, NOW + 3000, &st, &nrec);
	assert_int_equal(st, AG_NOTFOUND);
	assert_string_equal(x, "");
	free(x);
	/* an empty period is refused */
	x = report(s, "example.com", NOW, NOW, &st, &nrec);
	assert_int_equal(st, AG_INVALID);
	free(x);
	ag_store_close(s);
}

/* Rows for the domain, none with a record: defaults and an error. */
static void
test_report_no_record(void **state)
{
	struct ag_history *h = NULL;
	struct ag_history_row r;
	struct ag_store *s;
	char path[512], *x;
	ag_status st;

	(void)state;
	assert_int_equal(ag_history_new(4, &h), AG_OK);
	s = new_store("norecord", path, sizeof(path));
	memset(&r, 0, sizeof(r));
	r.time = NOW;
	r.source_ip = "192.0.2.5";
	r.header_from = "example.com";
	r.envelope_from = "example.com";
	r.result = AG_DMARC_TEMPERROR;
	push_ok("norecord", h, &r);
	flush_ok("norecord", h, s, 1);
	x = report(s, "example.com", NOW, NOW + 1, &st, NULL);
	assert_int_equal(st, AG_OK);
	count_in("norecord: error", x, "<error>no DMARC policy record was "
	    "found for example.com in this period</error>", 1);
	count_in("norecord: p none", x, "<p>none</p>", 1);
	count_in("norecord: policy_evaluated fails", x,
	    "<dkim>fail</dkim>\n        <spf>fail</spf>", 1);
	schema_valid("norecord", x);
	free(x);
	ag_store_close(s);
	ag_history_free(h);
}

/* A row changed behind our back: an error, never invalid XML. */
static void
test_report_corrupt(void **state)
{
	static const struct {
		const char *label;
		const char *sql;
		const char *what;
	} cases[] = {
		{ "bad disposition", "UPDATE dmarc_result SET disposition = "
		    "'<x>'", "disposition" },
		{ "bad source_ip", "UPDATE dmarc_result SET source_ip = "
		    "'unknown'", "source_ip" },
		{ "bad dkim", "UPDATE dmarc_result SET dkim = 'pass'",
		    "dkim" },
		{ "bad dkim result", "UPDATE dmarc_result SET dkim = "
		    "'great:example.com:s'", "dkim result" },
		{ "bad spf result", "UPDATE dmarc_result SET spf_result = "
		    "'maybe'", "spf" },
		{ "bad reason", "UPDATE dmarc_result SET reason = 'because'",
		    "reason" },
		{ "bad p", "UPDATE dmarc_result SET p = 'all'", "policy" },
		{ "bad fo", "UPDATE dmarc_result SET fo = '0;x'", "fo" },
	};
	char path[512], name[32], *x;
	ag_status st;

	(void)state;
	for (size_t i = 0; i < NELEM(cases); i++) {
		struct ag_history *h = NULL;
		struct ag_history_row r = row_fail(NOW, "192.0.2.1");
		struct ag_store *s;

		snprintf(name, sizeof(name), "corrupt%zu", i);
		assert_int_equal(ag_history_new(4, &h), AG_OK);
		s = new_store(name, path, sizeof(path));
		push_ok(cases[i].label, h, &r);
		flush_ok(cases[i].label, h, s, 1);
		raw_exec(path, cases[i].sql);
		x = report(s, "example.com", NOW, NOW + 1, &st, NULL);
		if (st != AG_PERMFAIL ||
		    strstr(ag_store_errstr(s), "corrupt row") == NULL ||
		    strstr(ag_store_errstr(s), cases[i].what) == NULL) {
			fail_msg("%s: got %s (%s), want PERMFAIL naming a corrupt "
			    "row and '%s'", cases[i].label, ag_status_str(st),
			    ag_store_errstr(s), cases[i].what);
		}
		free(x);
		ag_store_close(s);
		ag_history_free(h);
	}
}

/* ---- the XML escaper and the period parser -------------------------------- */

static void
test_xml_escape(void **state)
{
	static const struct {
		const char *label, *in, *out;
	} cases[] = {
		{ "plain", "example.com", "example.com" },
		{ "empty", "", "" },
		{ "markup", "<a href=\"x\">&'</a>",
		    "&lt;a href=&quot;x&quot;&gt;&amp;&apos;&lt;/a&gt;" },
		{ "entity not doubled", "&amp;", "&amp;amp;" },
		{ "controls", "a\tb\nc\rd\x01\x1f\x7f",
		    "a\\x09b\\x0ac\\x0dd\\x01\\x1f\\x7f" },
		{ "backslash", "a\\x01", "a\\\\x01" },
		{ "UTF-8 kept", "caf\xc3\xa9 \xe2\x98\x83 \xf0\x9f\x98\x80",
		    "caf\xc3\xa9 \xe2\x98\x83 \xf0\x9f\x98\x80" },
		{ "bad UTF-8", "\xff\xc3(\xe2\x98", "\\xff\\xc3(\\xe2\\x98" },
		{ "overlong", "\xc0\xbc", "\\xc0\\xbc" },
		{ "surrogate", "\xed\xa0\x80", "\\xed\\xa0\\x80" },
		{ "C1 control", "\xc2\x85", "\\xc2\\x85" },
		{ "U+FFFE, U+FFFF", "\xef\xbf\xbe\xef\xbf\xbf",
		    "\\xef\\xbf\\xbe\\xef\\xbf\\xbf" },
		{ "U+FFFD kept", "\xef\xbf\xbd", "\xef\xbf\xbd" },
	};

	(void)state;
	for (size_t i = 0; i < NELEM(cases); i++) {
		char *buf = NULL;
		size_t len = 0;
		FILE *fp = open_memstream(&buf, &len);

		assert_non_null(fp);
		ag_history_xml_put(fp, cases[i].in);
		fclose(fp);
		if (strcmp(buf, cases[i].out) != 0) {
			fail_msg("%s: got '%s', want '%s'", cases[i].label, buf,
			    cases[i].out);
		}
		free(buf);
	}
}

static void
test_parse_time(void **state)
{
	static const struct {
		const char *label, *in;
		ag_status st;
		int64_t want;
	} cases[] = {
		{ "seconds", "1700000000", AG_OK, 1700000000 },
		{ "zero", "0", AG_OK, 0 },
		{ "date", "2023-11-14", AG_OK, 1699920000 },
		{ "epoch date", "1970-01-01", AG_OK, 0 },
		{ "date and time", "2023-11-14T22:13:20Z", AG_OK, 1700000000 },
		{ "leap day", "2024-02-29", AG_OK, 1709164800 },
		{ "2000 is leap", "2000-02-29", AG_OK, 951782400 },
		{ "end of day", "2023-12-31T23:59:59Z", AG_OK, 1704067199 },
		{ "empty", "", AG_INVALID, 0 },
		{ "negative", "-1", AG_INVALID, 0 },
		{ "sign", "+5", AG_INVALID, 0 },
		{ "too many digits", "1234567890123", AG_INVALID, 0 },
		{ "trailing text", "1700000000s", AG_INVALID, 0 },
		{ "month 13", "2023-13-01", AG_INVALID, 0 },
		{ "month 0", "2023-00-01", AG_INVALID, 0 },
		{ "day 0", "2023-01-00", AG_INVALID, 0 },
		{ "Feb 29 not leap", "2023-02-29", AG_INVALID, 0 },
		{ "2100 not leap", "2100-02-29", AG_INVALID, 0 },
		{ "April 31", "2023-04-31", AG_INVALID, 0 },
		{ "before 1970", "1969-12-31", AG_INVALID, 0 },
		{ "hour 24", "2023-11-14T24:00:00Z", AG_INVALID, 0 },
		{ "second 60", "2023-11-14T23:59:60Z", AG_INVALID, 0 },
		{ "no Z", "2023-11-14T22:13:20", AG_INVALID, 0 },
		{ "offset", "2023-11-14T22:13:20+01", AG_INVALID, 0 },
		{ "space", "2023-11-14 22:13:20Z", AG_INVALID, 0 },
		{ "short date", "2023-1-14", AG_INVALID, 0 },
		{ "slashes", "2023/11/14", AG_INVALID, 0 },
		{ "letters", "yesterday", AG_INVALID, 0 },
	};

	(void)state;
	for (size_t i = 0; i < NELEM(cases); i++) {
		int64_t t = -7;
		ag_status st = ag_history_parse_time(cases[i].in, &t);

		if (st != cases[i].st || (st == AG_OK && t != cases[i].want)) {
			fail_msg("%s: '%s' gave %s %lld, want %s %lld",
			    cases[i].label, cases[i].in, ag_status_str(st),
			    (long long)t, ag_status_str(cases[i].st),
			    (long long)cases[i].want);
		}
	}
	assert_int_equal(ag_history_parse_time(NULL, &(int64_t){ 0 }),
	    AG_INVALID);
}

/* ---- the group ------------------------------------------------------------- */

static int
group_setup(void **state)
{
	const char *base = getenv("TMPDIR");

	(void)state;
	snprintf(tmpdir, sizeof(tmpdir), "%s/t_history.XXXXXX",
	    base && base[0] ? base : "/tmp");
	return mkdtemp(tmpdir) != NULL ? 0 : -1;
}

static int
group_teardown(void **state)
{
	char path[512];
	struct dirent *de;
	DIR *d;

	(void)state;
	if ((d = opendir(tmpdir)) == NULL) {
		return 0;
	}
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] != '.') {
			snprintf(path, sizeof(path), "%s/%s", tmpdir, de->d_name);
			unlink(path);
		}
	}
	closedir(d);
	rmdir(tmpdir);
	return 0;
}

int
main(void)
{
	static const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_queue_bound),
		cmocka_unit_test(test_queue_batches),
		cmocka_unit_test(test_queue_threads),
		cmocka_unit_test(test_write_read_back),
		cmocka_unit_test(test_flush_locked),
		cmocka_unit_test(test_no_policy_reload),
		cmocka_unit_test(test_prune),
		cmocka_unit_test(test_report),
		cmocka_unit_test(test_report_empty),
		cmocka_unit_test(test_report_no_record),
		cmocka_unit_test(test_report_corrupt),
		cmocka_unit_test(test_xml_escape),
		cmocka_unit_test(test_parse_time),
	};

	return cmocka_run_group_tests_name("history", tests, group_setup,
	    group_teardown);
}

/*
 * t_store.c - unit tests for lib/store.c against real SQLite files in a
 * temporary directory: schema creation and migration, rule round trips,
 * SPF settings (rule_action) and the migration of a version 1 database,
 * data_version, and the faults an administrator meets (missing, corrupt,
 * locked, read-only, newer or foreign database), each with the status
 * and the message the user should see.
 *
 * All cases run as one cmocka group (one TAP plan); the group setup makes
 * the directory and the teardown removes it.
 */
#include <dirent.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "policy.h"
#include "store.h"

#define TIMEOUT_MS 100
#define SQL_NASTY "'; DROP TABLE rules; --"
#define STR(x) STR_(x)
#define STR_(x) #x

/* The version 1 schema exactly as lib/store.c created it. */
static const char v1_schema[] =
	"CREATE TABLE rules ("
	" id INTEGER PRIMARY KEY,"
	" priority INTEGER NOT NULL DEFAULT 100,"
	" enabled INTEGER NOT NULL DEFAULT 1,"
	" dry_run INTEGER NOT NULL DEFAULT 0,"
	" comment TEXT,"
	" max_size INTEGER,"
	" max_rcpts INTEGER,"
	" created INTEGER NOT NULL);"
	"CREATE TABLE rule_match ("
	" rule_id INTEGER NOT NULL REFERENCES rules(id) ON DELETE CASCADE,"
	" field TEXT NOT NULL,"
	" value TEXT NOT NULL);"
	"CREATE INDEX rule_match_rule_id ON rule_match(rule_id);"
	"PRAGMA user_version = 1;";

static char tmpdir[256];

/* ---- helpers ---------------------------------------------------------- */

/* A fresh path in the temporary directory for case NAME. */
static const char *
db_path(char *buf, size_t bufsz, const char *name)
{
	snprintf(buf, bufsz, "%s/%s.db", tmpdir, name);
	return buf;
}

/* Run SQL on PATH through a plain sqlite3 connection. */
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

/* One integer from SQL on PATH. */
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

/* Write LEN bytes of BUF at OFFSET in PATH (creating it). */
static void
write_at(const char *path, off_t offset, const void *buf, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT, 0644);

	if (fd < 0 || pwrite(fd, buf, len, offset) != (ssize_t)len) {
		fail_msg("cannot write %s", path);
	}
	close(fd);
}

/* Open PATH and require status WANT; returns the handle (close it). */
static struct ag_store *
open_want(const char *label, const char *path, int flags, ag_status want)
{
	struct ag_store *s = NULL;
	ag_status st;

	st = ag_store_open(path, flags, TIMEOUT_MS, &s);
	if (st != want) {
		fail_msg("%s: open %s gave %s (%s), want %s", label, path,
		    ag_status_str(st), ag_store_errstr(s), ag_status_str(want));
	}
	if (s == NULL) {
		fail_msg("%s: no handle returned", label);
	}
	return s;
}

/* Require that S's error names PATH and contains WHAT. */
static void
err_says(const char *label, const struct ag_store *s, const char *path,
    const char *what)
{
	const char *e = ag_store_errstr(s);

	if (strstr(e, path) == NULL || strstr(e, what) == NULL) {
		fail_msg("%s: error '%s' should name %s and say '%s'", label, e,
		    path, what);
	}
}

/* A rule from text conditions ("field=value", NULL-terminated). */
static void
rule_make(struct ag_rule *r, int priority, int64_t max_size,
    int64_t max_rcpts, const char *comment, const char *const *m)
{
	size_t n = 0;

	ag_rule_init(r);
	r->priority = priority;
	r->max_size = max_size;
	r->max_rcpts = max_rcpts;
	r->comment = comment ? strdup(comment) : NULL;
	while (m != NULL && m[n] != NULL) {
		n++;
	}
	r->match = calloc(n ? n : 1, sizeof(*r->match));
	for (r->nmatch = 0; r->nmatch < n; r->nmatch++) {
		const char *eq = strchr(m[r->nmatch], '=');
		char name[32];

		snprintf(name, sizeof(name), "%.*s", (int)(eq - m[r->nmatch]),
		    m[r->nmatch]);
		if (ag_field_parse(name, &r->match[r->nmatch].field) != 0) {
			fail_msg("bad test field %s", name);
		}
		r->match[r->nmatch].value = strdup(eq + 1);
	}
}

/* Add a rule, requiring success; returns its id. */
static int64_t
add_ok(struct ag_store *s, int priority, int64_t max_size,
    int64_t max_rcpts, const char *comment, const char *const *m)
{
	struct ag_rule r;
	int64_t id = 0;
	ag_status st;

	rule_make(&r, priority, max_size, max_rcpts, comment, m);
	st = ag_store_rule_add(s, &r, &id);
	ag_rule_clear(&r);
	if (st != AG_OK || id <= 0) {
		fail_msg("rule add: %s: %s", ag_status_str(st),
		    ag_store_errstr(s));
	}
	return id;
}

/* The rule with ID in P, or NULL. */
static const struct ag_rule *
find(const struct ag_policy *p, int64_t id)
{
	size_t i;

	for (i = 0; i < ag_policy_count(p); i++) {
		if (ag_policy_rule(p, i)->id == id) {
			return ag_policy_rule(p, i);
		}
	}
	return NULL;
}

static struct ag_policy *
load_ok(struct ag_store *s)
{
	struct ag_policy *p = NULL;
	ag_status st = ag_store_load_policy(s, &p);

	if (st != AG_OK || p == NULL) {
		fail_msg("load policy: %s: %s", ag_status_str(st),
		    ag_store_errstr(s));
	}
	return p;
}

/* ---- schema ------------------------------------------------------------- */

static void
test_create(void **state)
{
	char path[512];
	struct ag_store *s;

	(void)state;
	db_path(path, sizeof(path), "create");
	s = open_want("create", path, AG_STORE_CREATE, AG_OK);
	if (ag_store_is_readonly(s) || ag_store_errstr(s)[0] != '\0') {
		fail_msg("create: read-only or error '%s'", ag_store_errstr(s));
	}
	ag_store_close(s);
	if (raw_int(path, "PRAGMA user_version") != AG_STORE_SCHEMA_VERSION) {
		fail_msg("create: user_version is not %d",
		    AG_STORE_SCHEMA_VERSION);
	}
	if (raw_int(path, "SELECT count(*) FROM sqlite_master WHERE name IN "
	    "('rules', 'rule_match', 'rule_match_rule_id', 'rule_action')") !=
	    4) {
		fail_msg("create: tables or index missing");
	}
	/* Idempotent, and plain opens work once it exists. */
	ag_store_close(open_want("create again", path, AG_STORE_CREATE, AG_OK));
	ag_store_close(open_want("reopen", path, 0, AG_OK));
	s = open_want("reopen read-only", path, AG_STORE_READONLY, AG_OK);
	if (!ag_store_is_readonly(s)) {
		fail_msg("AG_STORE_READONLY handle not read-only");
	}
	ag_store_close(s);
}

static void
test_migrate_empty(void **state)
{
	char path[512];

	(void)state;
	db_path(path, sizeof(path), "empty");
	write_at(path, 0, "", 0);
	ag_store_close(open_want("empty file", path, 0, AG_OK));
	if (raw_int(path, "PRAGMA user_version") != AG_STORE_SCHEMA_VERSION ||
	    raw_int(path, "SELECT count(*) FROM rules") != 0) {
		fail_msg("empty file: not migrated");
	}
}

/* ---- rules ------------------------------------------------------------ */

static void
test_round_trip(void **state)
{
	static const char *const m1[] = { "client=192.0.2.77/24",
		"sender-domain=Example.COM", "sender-domain=.example.org",
		NULL };
	static const char *const m2[] = { "sasl-user=" SQL_NASTY,
		"rcpt=Bob@Example.NET", NULL };
	const struct ag_rule *r;
	struct ag_policy *p;
	struct ag_store *s;
	int64_t id1, id2, id3;
	char path[512];

	(void)state;
	s = open_want("round trip", db_path(path, sizeof(path), "rules"),
	    AG_STORE_CREATE, AG_OK);
	id1 = add_ok(s, 10, 20 << 20, AG_LIMIT_UNSET, "narrow", m1);
	id2 = add_ok(s, 50, AG_LIMIT_UNSET, 7, SQL_NASTY, m2);
	id3 = add_ok(s, 1000, 10 << 20, 50, NULL, NULL);
	p = load_ok(s);
	if (ag_policy_count(p) != 3 || ag_policy_rule(p, 0)->id != id1 ||
	    ag_policy_rule(p, 2)->id != id3) {
		fail_msg("round trip: wrong rules or order");
	}
	r = find(p, id1);
	if (r->priority != 10 || r->max_size != 20 << 20 ||
	    r->max_rcpts != AG_LIMIT_UNSET || r->nmatch != 3 ||
	    strcmp(r->match[0].value, "192.0.2.0/24") != 0 ||
	    strcmp(r->match[1].value, "example.com") != 0 ||
	    r->match[2].field != AG_F_SENDER_DOMAIN ||
	    strcmp(r->comment, "narrow") != 0 || !r->enabled || r->dry_run) {
		fail_msg("round trip: rule %lld not read back as written",
		    (long long)id1);
	}
	r = find(p, id2);
	if (r->nmatch != 2 || strcmp(r->match[0].value, SQL_NASTY) != 0 ||
	    strcmp(r->comment, SQL_NASTY) != 0 ||
	    strcmp(r->match[1].value, "Bob@example.net") != 0) {
		fail_msg("round trip: SQL metacharacters not kept verbatim");
	}
	r = find(p, id3);
	if (r->nmatch != 0 || r->comment != NULL || r->max_rcpts != 50) {
		fail_msg("round trip: default rule not read back");
	}
	ag_policy_free(p);
	if (ag_store_rule_set_enabled(s, id1, false) != AG_OK) {
		fail_msg("disable: %s", ag_store_errstr(s));
	}
	p = load_ok(s);
	if (find(p, id1) == NULL || find(p, id1)->enabled) {
		fail_msg("disable: rule not kept or still enabled");
	}
	ag_policy_free(p);
	if (ag_store_rule_set_enabled(s, id1, true) != AG_OK) {
		fail_msg("enable: %s", ag_store_errstr(s));
	}
	p = load_ok(s);
	if (!find(p, id1)->enabled) {
		fail_msg("enable: rule still disabled");
	}
	ag_policy_free(p);
	if (ag_store_rule_del(s, id1) != AG_OK) {
		fail_msg("del: %s", ag_store_errstr(s));
	}
	p = load_ok(s);
	if (find(p, id1) != NULL || ag_policy_count(p) != 2) {
		fail_msg("del: rule still there");
	}
	ag_policy_free(p);
	ag_store_close(s);
	if (raw_int(path, "SELECT count(*) FROM rules") != 2 ||
	    raw_int(path, "SELECT count(*) FROM rule_match") != 2) {
		fail_msg("del: conditions not deleted with the rule");
	}
}

struct notfound_case {
	const char *label;
	int op;		/* 0 del, 1 enable, 2 disable */
};

static void
test_unknown_id(void **state)
{
	static const struct notfound_case cases[] = {
		{ "del unknown id", 0 },
		{ "enable unknown id", 1 },
		{ "disable unknown id", 2 },
	};
	struct ag_store *s;
	char path[512];
	ag_status st;
	size_t i;

	(void)state;
	s = open_want("unknown id", db_path(path, sizeof(path), "unknown"),
	    AG_STORE_CREATE, AG_OK);
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		st = cases[i].op == 0 ? ag_store_rule_del(s, 42) :
		    ag_store_rule_set_enabled(s, 42, cases[i].op == 1);
		if (st != AG_NOTFOUND) {
			fail_msg("%s: %s", cases[i].label, ag_status_str(st));
		}
		err_says(cases[i].label, s, path, "no such rule: 42");
	}
	ag_store_close(s);
}

struct badrule_case {
	const char *label;
	const char *m[3];
	int64_t max_size;
	const char *says;
};

static void
test_bad_rule(void **state)
{
	static const struct badrule_case cases[] = {
		{ "bad client", { "client=192.0.2.300" }, 1, "client=" },
		{ "bad domain", { "helo=ok.example", "rcpt-domain=a..b" }, 1,
		    "rcpt-domain=a..b" },
		{ "bad yes/no", { "trusted=perhaps" }, 1, "yes or no" },
		{ "negative limit", { NULL }, -5, "negative" },
	};
	struct ag_store *s;
	struct ag_rule r;
	char path[512];
	int64_t id = 0;
	ag_status st;
	size_t i;

	(void)state;
	s = open_want("bad rule", db_path(path, sizeof(path), "badrule"),
	    AG_STORE_CREATE, AG_OK);
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		rule_make(&r, 1, cases[i].max_size, AG_LIMIT_UNSET, NULL,
		    cases[i].m);
		st = ag_store_rule_add(s, &r, &id);
		ag_rule_clear(&r);
		if (st != AG_INVALID) {
			fail_msg("%s: %s", cases[i].label, ag_status_str(st));
		}
		err_says(cases[i].label, s, path, cases[i].says);
	}
	ag_store_close(s);
	if (raw_int(path, "SELECT count(*) FROM rules") != 0) {
		fail_msg("bad rule: something was inserted");
	}
}

/* Rows written by hand that the store must refuse to load. */
static void
test_bad_rows(void **state)
{
	static const struct {
		const char *label, *sql, *says;
	} cases[] = {
		{ "row: unknown field", "INSERT INTO rule_match VALUES "
		    "(1, 'colour', 'red')", "rule 1: unknown field 'colour'" },
		{ "row: bad value", "INSERT INTO rule_match VALUES "
		    "(1, 'client', 'nowhere')", "rule 1: bad client value" },
		{ "row: negative limit", "UPDATE rules SET max_size = -7",
		    "rule 1: negative limit" },
		{ "row: unknown action kind", "INSERT INTO rule_action VALUES "
		    "(1, 'arc', 'seal', 'yes')",
		    "rule 1: unknown action kind 'arc'" },
		{ "row: bad dkim setting", "INSERT INTO rule_action VALUES "
		    "(1, 'dkim', 'require', 'on')",
		    "rule 1: unknown dkim setting 'require=on'" },
		{ "row: action kind in upper case", "INSERT INTO rule_action "
		    "VALUES (1, 'SPF', 'fail', 'reject')",
		    "rule 1: unknown action kind 'SPF'" },
		{ "row: unknown spf setting", "INSERT INTO rule_action VALUES "
		    "(1, 'spf', 'softfial', 'reject')",
		    "rule 1: unknown spf setting 'softfial'" },
		{ "row: bad spf disposition", "INSERT INTO rule_action VALUES "
		    "(1, 'spf', 'fail', 'drop')",
		    "rule 1: bad spf fail value 'drop'" },
		{ "row: spf disposition in upper case", "INSERT INTO "
		    "rule_action VALUES (1, 'spf', 'permerror', 'Reject')",
		    "rule 1: bad spf permerror value 'Reject'" },
		{ "row: spf disposition as a number", "INSERT INTO rule_action "
		    "VALUES (1, 'spf', 'fail', 3)",
		    "rule 1: bad spf fail value '3'" },
		{ "row: bad spf check value", "INSERT INTO rule_action VALUES "
		    "(1, 'spf', 'check', 'yes')",
		    "rule 1: bad spf check value 'yes'" },
		{ "row: bad dmarc value", "INSERT INTO rule_action VALUES "
		    "(1, 'dmarc', 'enforce', 'no')",
		    "rule 1: unknown dmarc setting 'enforce=no'" },
		{ "row: unknown dmarc setting", "INSERT INTO rule_action VALUES "
		    "(1, 'dmarc', 'policy', 'on')",
		    "rule 1: unknown dmarc setting 'policy=on'" },
		{ "row: bad rate spec", "INSERT INTO rule_action VALUES "
		    "(1, 'rate', '1', 'messages:10/0s')",
		    "rule 1: rate 'messages:10/0s': the window" },
		{ "row: rate out of order", "INSERT INTO rule_action VALUES "
		    "(1, 'rate', '2', 'messages:10/1h')",
		    "rule 1: unexpected rate row '2'" },
		{ "row: rate name junk", "INSERT INTO rule_action VALUES "
		    "(1, 'rate', '1x', 'messages:10/1h')",
		    "rule 1: unexpected rate row '1x'" },
		{ "row: bad on-limit", "INSERT INTO rule_action VALUES "
		    "(1, 'rate', 'on-limit', 'accept')",
		    "rule 1: bad on-limit 'accept'" },
		{ "row: bad exempt", "INSERT INTO rule_action VALUES "
		    "(1, 'rate', 'exempt', 'no')",
		    "rule 1: bad exempt value 'no'" },
	};
	struct ag_policy *p = NULL;
	struct ag_store *s;
	char path[512], name[32];
	ag_status st;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		snprintf(name, sizeof(name), "badrow%zu", i);
		s = open_want(cases[i].label, db_path(path, sizeof(path), name),
		    AG_STORE_CREATE, AG_OK);
		add_ok(s, 1, 1, AG_LIMIT_UNSET, NULL, NULL);
		raw_exec(path, cases[i].sql);
		st = ag_store_load_policy(s, &p);
		if (st != AG_PERMFAIL || p != NULL) {
			fail_msg("%s: %s", cases[i].label, ag_status_str(st));
		}
		err_says(cases[i].label, s, path, cases[i].says);
		ag_store_close(s);
	}
}

/* ---- SPF settings (rule_action) ------------------------------------------ */

/* Add R (consumed), requiring success; returns its id. */
static int64_t
add_rule_ok(struct ag_store *s, struct ag_rule *r)
{
	int64_t id = 0;
	ag_status st;

	st = ag_store_rule_add(s, r, &id);
	ag_rule_clear(r);
	if (st != AG_OK || id <= 0) {
		fail_msg("rule add: %s: %s", ag_status_str(st),
		    ag_store_errstr(s));
	}
	return id;
}

/* Require R's SPF settings to be WANT (a disposition per result) and CHECK. */
static void
spf_says(const char *label, const struct ag_rule *r,
    const int64_t want[AG_SPF_NRESULTS], int64_t check)
{
	size_t i;

	if (r == NULL) {
		fail_msg("%s: rule not loaded", label);
	}
	for (i = 0; i < AG_SPF_NRESULTS; i++) {
		if (r->spf_disp[i] != want[i]) {
			fail_msg("%s: spf result %zu is %lld, want %lld",
			    label, i, (long long)r->spf_disp[i],
			    (long long)want[i]);
		}
	}
	if (r->spf_check != check) {
		fail_msg("%s: spf check is %lld, want %lld", label,
		    (long long)r->spf_check, (long long)check);
	}
}

static void
test_spf_round_trip(void **state)
{
	static const int64_t all[AG_SPF_NRESULTS] = {
		[AG_SPF_NONE] = AG_DISP_ACCEPT,
		[AG_SPF_NEUTRAL] = AG_DISP_TAG,
		[AG_SPF_PASS] = AG_DISP_ACCEPT,
		[AG_SPF_FAIL] = AG_DISP_REJECT,
		[AG_SPF_SOFTFAIL] = AG_DISP_TAG,
		[AG_SPF_TEMPERROR] = AG_DISP_TEMPFAIL,
		[AG_SPF_PERMERROR] = AG_DISP_REJECT,
	};
	static const int64_t none[AG_SPF_NRESULTS] = { -1, -1, -1, -1, -1, -1,
		-1 };
	static const char *const postmaster[] = {
		"rcpt=postmaster@example.net", NULL };
	int64_t exempt[AG_SPF_NRESULTS];
	int64_t id_all, id_only, id_check, id_none;
	struct ag_policy *p;
	struct ag_store *s;
	struct ag_rule r;
	char path[512];
	size_t i;

	(void)state;
	s = open_want("spf round trip", db_path(path, sizeof(path), "spf"),
	    AG_STORE_CREATE, AG_OK);
	/* Every result and check=off, with a limit beside them. */
	rule_make(&r, 1000, 10 << 20, AG_LIMIT_UNSET, NULL, NULL);
	memcpy(r.spf_disp, all, sizeof(all));
	r.spf_check = 0;
	id_all = add_rule_ok(s, &r);
	/* Only SPF: a valid rule; accept (0) must survive as accept. */
	rule_make(&r, 10, AG_LIMIT_UNSET, AG_LIMIT_UNSET, "exempt", postmaster);
	r.spf_disp[AG_SPF_FAIL] = AG_DISP_ACCEPT;
	id_only = add_rule_ok(s, &r);
	rule_make(&r, 20, AG_LIMIT_UNSET, AG_LIMIT_UNSET, NULL, NULL);
	r.spf_check = 1;
	id_check = add_rule_ok(s, &r);
	id_none = add_ok(s, 30, 1, AG_LIMIT_UNSET, NULL, NULL);
	p = load_ok(s);
	spf_says("all results, check off", find(p, id_all), all, 0);
	if (find(p, id_all)->max_size != 10 << 20) {
		fail_msg("spf round trip: limit lost beside SPF settings");
	}
	for (i = 0; i < AG_SPF_NRESULTS; i++) {
		exempt[i] = i == AG_SPF_FAIL ? AG_DISP_ACCEPT : -1;
	}
	spf_says("fail=accept only", find(p, id_only), exempt, AG_LIMIT_UNSET);
	if (find(p, id_only)->nmatch != 1) {
		fail_msg("spf round trip: condition lost");
	}
	spf_says("check on only", find(p, id_check), none, 1);
	spf_says("no SPF settings", find(p, id_none), none, AG_LIMIT_UNSET);
	if (!ag_policy_spf_per_rcpt(p)) {
		fail_msg("spf round trip: rcpt rule with SPF not per recipient");
	}
	ag_policy_free(p);
	ag_store_close(s);
	/* The rows as documented: kind, result name, disposition name. */
	if (raw_int(path, "SELECT count(*) FROM rule_action") != 10 ||
	    raw_int(path, "SELECT count(*) FROM rule_action WHERE kind = 'spf' "
	    "AND name = 'fail' AND value = 'reject'") != 1 ||
	    raw_int(path, "SELECT count(*) FROM rule_action WHERE kind = 'spf' "
	    "AND name = 'check' AND value = 'off'") != 1 ||
	    raw_int(path, "SELECT count(*) FROM rule_action WHERE kind = 'spf' "
	    "AND name = 'check' AND value = 'on'") != 1 ||
	    raw_int(path, "SELECT count(*) FROM rule_action WHERE kind = 'spf' "
	    "AND name = 'temperror' AND value = 'tempfail'") != 1 ||
	    raw_int(path, "SELECT count(*) FROM rule_action WHERE kind = 'spf' "
	    "AND name = 'fail' AND value = 'accept'") != 1) {
		fail_msg("spf round trip: rule_action rows not as documented");
	}
}

/* Rate limits, on-limit and exempt (and the DMARC settings) survive the
 * store as documented. */
static void
test_rate_round_trip(void **state)
{
	static const char *const specs[] = { "messages:100/1h:sender",
	    "recipients:1000/1d", "bytes:50M/1d:client-ip/24/48" };
	const struct ag_rule *got;
	struct ag_policy *p;
	struct ag_store *s;
	struct ag_rule r;
	char path[512], err[256], buf[AG_RATE_SPEC_MAX];
	int64_t id, id2;
	size_t i;

	(void)state;
	s = open_want("rate round trip", db_path(path, sizeof(path), "rate"),
	    AG_STORE_CREATE, AG_OK);
	rule_make(&r, 10, AG_LIMIT_UNSET, AG_LIMIT_UNSET, NULL, NULL);
	for (i = 0; i < (sizeof(specs) / sizeof(specs[0])); i++) {
		assert_int_equal(ag_rate_spec_parse(specs[i], &r.rate[i], err,
		    sizeof(err)), AG_OK);
	}
	r.nrate = (sizeof(specs) / sizeof(specs[0]));
	r.on_limit = AG_DISP_REJECT;
	r.dmarc_check = 1;
	r.dmarc_enforce = 0;
	id = add_rule_ok(s, &r);
	rule_make(&r, 5, AG_LIMIT_UNSET, AG_LIMIT_UNSET, NULL, NULL);
	r.exempt = true;
	id2 = add_rule_ok(s, &r);
	/* refused before anything is written */
	rule_make(&r, 5, AG_LIMIT_UNSET, AG_LIMIT_UNSET, NULL, NULL);
	r.on_limit = AG_DISP_ACCEPT;
	assert_int_equal(ag_store_rule_add(s, &r, NULL), AG_INVALID);
	r.on_limit = AG_LIMIT_UNSET;
	r.nrate = AG_RATE_MAX_PER_RULE + 1;
	assert_int_equal(ag_store_rule_add(s, &r, NULL), AG_INVALID);
	ag_rule_clear(&r);
	p = load_ok(s);
	got = find(p, id);
	assert_non_null(got);
	assert_int_equal(got->nrate, (sizeof(specs) / sizeof(specs[0])));
	assert_string_equal(ag_rate_spec_format(&got->rate[2], buf,
	    sizeof(buf)), "bytes:50M/1d:client-ip/24/48");
	assert_int_equal(got->on_limit, AG_DISP_REJECT);
	assert_int_equal(got->dmarc_check, 1);
	assert_int_equal(got->dmarc_enforce, 0);
	assert_int_equal(find(p, id2)->dmarc_check, AG_LIMIT_UNSET);
	assert_false(got->exempt);
	assert_true(find(p, id2)->exempt);
	assert_int_equal(find(p, id2)->on_limit, AG_LIMIT_UNSET);
	ag_policy_free(p);
	ag_store_close(s);
	if (raw_int(path, "SELECT count(*) FROM rule_action WHERE kind = "
	    "'rate' AND name = '1' AND value = 'messages:100/1h:sender'") != 1 ||
	    raw_int(path, "SELECT count(*) FROM rule_action WHERE kind = "
	    "'rate' AND name = 'on-limit' AND value = 'reject'") != 1 ||
	    raw_int(path, "SELECT count(*) FROM rule_action WHERE kind = "
	    "'rate' AND name = 'exempt' AND value = 'yes'") != 1 ||
	    raw_int(path, "SELECT count(*) FROM rule_action WHERE kind = "
	    "'dmarc' AND name = 'enforce' AND value = 'off'") != 1) {
		fail_msg("rate round trip: rule_action rows not as documented");
	}
}

/* The checkpoint table: save replaces, load gives back, junk skipped;
 * each owner keeps its own. */
struct ckpt {
	size_t i, n;
	size_t seen;
	uint64_t sum;
};

static int
ckpt_next(void *arg, const void **key, size_t *keylen, uint64_t *tat)
{
	static const char *const keys[] = { "1.1:sender=a@example.com",
	    "1.2:pool", "2.1:client-ip=192.0.2.0/24" };
	struct ckpt *c = arg;

	if (c->i >= c->n) {
		return 0;
	}
	*key = keys[c->i];
	*keylen = strlen(keys[c->i]);
	*tat = 1000 + c->i;
	c->i++;
	return 1;
}

static void
ckpt_cb(void *arg, const void *key, size_t keylen, uint64_t tat)
{
	struct ckpt *c = arg;

	(void)key;
	assert_true(keylen > 0);
	c->seen++;
	c->sum += tat;
}

static void
test_rate_checkpoint(void **state)
{
	struct ckpt c = { 0, 3, 0, 0 };
	struct ag_store *s;
	char path[512];
	size_t n = 0;

	(void)state;
	s = open_want("rate checkpoint", db_path(path, sizeof(path), "ckpt"),
	    AG_STORE_CREATE, AG_OK);
	assert_int_equal(ag_store_rate_save(s, "a", ckpt_next, &c, &n), AG_OK);
	assert_int_equal(n, 3);
	c = (struct ckpt){ 0, 2, 0, 0 };
	assert_int_equal(ag_store_rate_save(s, "b", ckpt_next, &c, &n), AG_OK);
	c = (struct ckpt){ 0, 1, 0, 0 };
	assert_int_equal(ag_store_rate_save(s, "a", ckpt_next, &c, &n), AG_OK);
	assert_int_equal(n, 1);		/* replaced, not added */
	raw_exec(path, "INSERT INTO rate_state VALUES ('a', x'', 5);"
	    "INSERT INTO rate_state VALUES ('a', 'neg', -5);");
	assert_int_equal(ag_store_rate_load(s, "a", ckpt_cb, &c), AG_OK);
	assert_int_equal(c.seen, 1);	/* the junk rows are skipped */
	assert_int_equal(c.sum, 1000);
	/* another owner's counters are its own */
	c = (struct ckpt){ 0, 0, 0, 0 };
	assert_int_equal(ag_store_rate_load(s, "b", ckpt_cb, &c), AG_OK);
	assert_int_equal(c.seen, 2);
	assert_int_equal(c.sum, 1000 + 1001);
	ag_store_close(s);
}

/* SPF settings out of range are refused before anything is written. */
static void
test_bad_spf_rule(void **state)
{
	static const struct {
		const char *label;
		int result;	/* -1: spf_check */
		int64_t value;
		const char *says;
	} cases[] = {
		{ "spf: disposition past reject", AG_SPF_SOFTFAIL, 4,
		    "spf softfail: bad disposition 4" },
		{ "spf: negative disposition", AG_SPF_NONE, -3,
		    "spf none: bad disposition -3" },
		{ "spf: check 2", -1, 2, "spf check: bad value 2" },
	};
	struct ag_store *s;
	struct ag_rule r;
	char path[512];
	int64_t id = 0;
	ag_status st;
	size_t i;

	(void)state;
	s = open_want("bad spf rule", db_path(path, sizeof(path), "badspf"),
	    AG_STORE_CREATE, AG_OK);
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		rule_make(&r, 1, AG_LIMIT_UNSET, AG_LIMIT_UNSET, NULL, NULL);
		r.spf_disp[AG_SPF_FAIL] = AG_DISP_REJECT;
		if (cases[i].result < 0) {
			r.spf_check = cases[i].value;
		} else {
			r.spf_disp[cases[i].result] = cases[i].value;
		}
		st = ag_store_rule_add(s, &r, &id);
		ag_rule_clear(&r);
		if (st != AG_INVALID) {
			fail_msg("%s: %s", cases[i].label, ag_status_str(st));
		}
		err_says(cases[i].label, s, path, cases[i].says);
	}
	ag_store_close(s);
	if (raw_int(path, "SELECT count(*) FROM rules") != 0 ||
	    raw_int(path, "SELECT count(*) FROM rule_action") != 0) {
		fail_msg("bad spf rule: something was inserted");
	}
}

/* Deleting a rule deletes its actions; one setting per rule and name. */
static void
test_action_cascade(void **state)
{
	struct ag_store *s;
	struct ag_policy *p;
	struct ag_rule r;
	int64_t id1, id2;
	char path[512];
	sqlite3 *db = NULL;
	int rc;

	(void)state;
	s = open_want("cascade", db_path(path, sizeof(path), "cascade"),
	    AG_STORE_CREATE, AG_OK);
	rule_make(&r, 1, AG_LIMIT_UNSET, AG_LIMIT_UNSET, NULL, NULL);
	r.spf_disp[AG_SPF_FAIL] = AG_DISP_REJECT;
	r.spf_disp[AG_SPF_SOFTFAIL] = AG_DISP_TAG;
	r.spf_check = 1;
	id1 = add_rule_ok(s, &r);
	rule_make(&r, 2, AG_LIMIT_UNSET, AG_LIMIT_UNSET, NULL, NULL);
	r.spf_disp[AG_SPF_PERMERROR] = AG_DISP_TEMPFAIL;
	id2 = add_rule_ok(s, &r);
	if (ag_store_rule_del(s, id1) != AG_OK) {
		fail_msg("cascade: del: %s", ag_store_errstr(s));
	}
	p = load_ok(s);
	if (ag_policy_count(p) != 1 || find(p, id2) == NULL ||
	    find(p, id2)->spf_disp[AG_SPF_PERMERROR] != AG_DISP_TEMPFAIL) {
		fail_msg("cascade: the other rule's settings were touched");
	}
	ag_policy_free(p);
	ag_store_close(s);
	if (raw_int(path, "SELECT count(*) FROM rule_action") != 1 ||
	    raw_int(path, "SELECT count(*) FROM rule_action WHERE rule_id = "
	    "(SELECT max(id) FROM rules)") != 1) {
		fail_msg("cascade: actions not deleted with their rule");
	}
	/* The same setting twice for one rule is refused by the schema. */
	if (sqlite3_open(path, &db) != SQLITE_OK) {
		fail_msg("cascade: cannot open %s", path);
	}
	rc = sqlite3_exec(db, "INSERT INTO rule_action SELECT rule_id, kind, "
	    "name, 'accept' FROM rule_action", NULL, NULL, NULL);
	sqlite3_close(db);
	if ((rc & 0xff) != SQLITE_CONSTRAINT) {
		fail_msg("cascade: duplicate setting not refused (%d)", rc);
	}
}

/* A version 1 database (made by hand) is migrated with its rules intact. */
static void
test_migrate_v1(void **state)
{
	static const int64_t none[AG_SPF_NRESULTS] = { -1, -1, -1, -1, -1, -1,
		-1 };
	static const int64_t fail_reject[AG_SPF_NRESULTS] = { -1, -1, -1,
		AG_DISP_REJECT, -1, -1, -1 };
	const struct ag_rule *r;
	struct ag_policy *p;
	struct ag_store *s;
	struct ag_rule nr;
	char path[512];
	int64_t id;

	(void)state;
	db_path(path, sizeof(path), "v1");
	raw_exec(path, v1_schema);
	raw_exec(path, "INSERT INTO rules (id, priority, enabled, dry_run, "
	    "comment, max_size, max_rcpts, created) VALUES "
	    "(3, 10, 1, 0, 'partner', 52428800, NULL, 1700000000),"
	    "(5, 1000, 0, 1, NULL, 10485760, 50, 1700000000);"
	    "INSERT INTO rule_match VALUES (3, 'sender-domain', 'example.com'),"
	    "(3, 'client', '192.0.2.0/24');");
	/* A read-only open cannot migrate and says so. */
	s = open_want("v1 read-only", path, AG_STORE_READONLY, AG_PERMFAIL);
	err_says("v1 read-only", s, path, "needs migration (schema version 1");
	ag_store_close(s);
	s = open_want("v1 migrate", path, 0, AG_OK);
	if (raw_int(path, "PRAGMA user_version") != AG_STORE_SCHEMA_VERSION ||
	    raw_int(path, "SELECT count(*) FROM sqlite_master WHERE name = "
	    "'rule_action'") != 1) {
		fail_msg("v1: not migrated to version %d",
		    AG_STORE_SCHEMA_VERSION);
	}
	p = load_ok(s);
	r = find(p, 3);
	if (ag_policy_count(p) != 2 || r == NULL || r->priority != 10 ||
	    r->max_size != 52428800 || r->max_rcpts != AG_LIMIT_UNSET ||
	    !r->enabled || r->dry_run || r->nmatch != 2 ||
	    strcmp(r->comment, "partner") != 0 ||
	    strcmp(r->match[1].value, "192.0.2.0/24") != 0) {
		fail_msg("v1: rule 3 not intact after migration");
	}
	spf_says("v1 rule 3", r, none, AG_LIMIT_UNSET);
	r = find(p, 5);
	if (r == NULL || r->enabled || !r->dry_run || r->max_rcpts != 50) {
		fail_msg("v1: rule 5 not intact after migration");
	}
	spf_says("v1 rule 5", r, none, AG_LIMIT_UNSET);
	ag_policy_free(p);
	/* The new table works on the migrated file, cascade included. */
	rule_make(&nr, 1, AG_LIMIT_UNSET, AG_LIMIT_UNSET, NULL, NULL);
	nr.spf_disp[AG_SPF_FAIL] = AG_DISP_REJECT;
	id = add_rule_ok(s, &nr);
	p = load_ok(s);
	spf_says("v1 then spf rule", find(p, id), fail_reject, AG_LIMIT_UNSET);
	ag_policy_free(p);
	if (ag_store_rule_del(s, id) != AG_OK) {
		fail_msg("v1: del: %s", ag_store_errstr(s));
	}
	ag_store_close(s);
	if (raw_int(path, "SELECT count(*) FROM rule_action") != 0) {
		fail_msg("v1: cascade does not reach rule_action");
	}
	/* Opening again changes nothing. */
	ag_store_close(open_want("v1 reopen", path, 0, AG_OK));
	if (raw_int(path, "SELECT count(*) FROM rules") != 2) {
		fail_msg("v1: rules changed on reopen");
	}
}

static int
no_keys(void *arg, const void **key, size_t *keylen, uint64_t *tat)
{
	(void)arg, (void)key, (void)keylen, (void)tat;
	return 0;
}

/* data_version moves with any write of another connection; the policy
 * version only with rule changes. */
static void
test_data_version(void **state)
{
	struct ag_store *a, *b;
	int64_t v1 = 0, v2 = 0, v3 = 0, p1 = 0, p2 = 0, p3 = 0;
	char path[512];
	size_t n = 0;

	(void)state;
	db_path(path, sizeof(path), "dataversion");
	a = open_want("data_version a", path, AG_STORE_CREATE, AG_OK);
	b = open_want("data_version b", path, 0, AG_OK);
	if (ag_store_data_version(a, &v1) != AG_OK ||
	    ag_store_data_version(a, &v2) != AG_OK || v1 != v2) {
		fail_msg("data_version changed with no write");
	}
	assert_int_equal(ag_store_policy_version(a, &p1), AG_OK);
	add_ok(b, 5, 1000, AG_LIMIT_UNSET, NULL, NULL);
	if (ag_store_data_version(a, &v3) != AG_OK || v3 == v2) {
		fail_msg("data_version unchanged after another connection "
		    "wrote (%lld)", (long long)v3);
	}
	/* a rule change moves the policy version ... */
	assert_int_equal(ag_store_policy_version(a, &p2), AG_OK);
	assert_true(p2 > p1);
	assert_int_equal(ag_store_rule_set_enabled(b, 1, false), AG_OK);
	assert_int_equal(ag_store_policy_version(a, &p3), AG_OK);
	assert_true(p3 > p2);
	/* ... counters saved by another instance do not */
	assert_int_equal(ag_store_rate_save(b, "other", no_keys, NULL, &n),
	    AG_OK);
	assert_int_equal(ag_store_data_version(a, &v1), AG_OK);
	assert_int_equal(ag_store_policy_version(a, &p1), AG_OK);
	assert_true(v1 != v3);
	assert_int_equal(p1, p3);
	raw_exec(path, "UPDATE rules SET comment = 'by hand'");
	assert_int_equal(ag_store_policy_version(a, &p1), AG_OK);
	assert_true(p1 > p3);
	ag_store_close(a);
	ag_store_close(b);
}

/* ---- faults ------------------------------------------------------------- */

/* Prepare the file for a fault case; may return a connection to close. */
typedef sqlite3 *(*fault_setup)(const char *path);

static sqlite3 *
setup_nothing(const char *path)
{
	(void)path;
	return NULL;
}

static sqlite3 *
setup_garbage(const char *path)
{
	char junk[8192];
	size_t i;

	for (i = 0; i < sizeof(junk); i++) {
		junk[i] = (char)(i * 7 + 3);
	}
	write_at(path, 0, junk, sizeof(junk));
	return NULL;
}

/* A valid database whose first page (the schema b-tree) is overwritten. */
static sqlite3 *
setup_corrupt_schema(const char *path)
{
	char junk[4096 - 100];

	raw_exec(path, "PRAGMA page_size = 4096; CREATE TABLE t (x);"
	    "PRAGMA user_version = 1;");
	memset(junk, 0xa5, sizeof(junk));
	write_at(path, 100, junk, sizeof(junk));
	return NULL;
}

static sqlite3 *
setup_newer(const char *path)
{
	raw_exec(path, "PRAGMA user_version = 99");
	return NULL;
}

static sqlite3 *
setup_foreign(const char *path)
{
	raw_exec(path, "CREATE TABLE inventory (item TEXT)");
	return NULL;
}

static sqlite3 *
setup_current(const char *path)
{
	struct ag_store *s = NULL;

	if (ag_store_open(path, AG_STORE_CREATE, TIMEOUT_MS, &s) != AG_OK) {
		fail_msg("cannot create %s: %s", path, ag_store_errstr(s));
	}
	ag_store_close(s);
	return NULL;
}

static sqlite3 *
setup_empty(const char *path)
{
	write_at(path, 0, "", 0);
	return NULL;
}

/* A current database with another connection holding it exclusively. */
static sqlite3 *
setup_locked(const char *path)
{
	sqlite3 *db = NULL;

	setup_current(path);
	if (sqlite3_open(path, &db) != SQLITE_OK ||
	    sqlite3_exec(db, "BEGIN EXCLUSIVE", NULL, NULL, NULL) !=
	    SQLITE_OK) {
		fail_msg("cannot lock %s", path);
	}
	return db;
}

static sqlite3 *
setup_chmod_current(const char *path)
{
	setup_current(path);
	chmod(path, 0444);
	return NULL;
}

static sqlite3 *
setup_chmod_empty(const char *path)
{
	setup_empty(path);
	chmod(path, 0444);
	return NULL;
}

struct fault_case {
	const char *label;
	fault_setup setup;
	int flags;
	ag_status want;
	const char *says;
	bool readonly;		/* when want is AG_OK */
	bool unprivileged;	/* only when file modes bind (not root) */
};

#define ERR(s) (s), false, false
static const struct fault_case fault_cases[] = {
	{ "missing file", setup_nothing, 0, AG_PERMFAIL,
	    ERR("no such file") },
	{ "missing file, read-only", setup_nothing, AG_STORE_READONLY,
	    AG_PERMFAIL, ERR("no such file") },
	{ "missing file, read-only wins over create", setup_nothing,
	    AG_STORE_READONLY | AG_STORE_CREATE, AG_PERMFAIL,
	    ERR("no such file") },
	{ "garbage file", setup_garbage, 0, AG_PERMFAIL,
	    ERR("file is not a database") },
	{ "garbage file with create", setup_garbage, AG_STORE_CREATE,
	    AG_PERMFAIL, ERR("file is not a database") },
	{ "corrupt schema page", setup_corrupt_schema, 0, AG_PERMFAIL,
	    ERR("malformed") },
	{ "newer schema", setup_newer, AG_STORE_CREATE, AG_PERMFAIL,
	    ERR("database schema version 99 is newer than this authgate "
	    "(" STR(AG_STORE_SCHEMA_VERSION) ")") },
	{ "newer schema, read-only", setup_newer, AG_STORE_READONLY,
	    AG_PERMFAIL, ERR("is newer than this authgate") },
	{ "foreign database", setup_foreign, AG_STORE_CREATE, AG_PERMFAIL,
	    ERR("not an authgate database") },
	{ "locked database", setup_locked, 0, AG_TEMPFAIL,
	    ERR("database is locked") },
	{ "locked database, create", setup_locked, AG_STORE_CREATE,
	    AG_TEMPFAIL, ERR("database is locked") },
	{ "read-only at current schema", setup_current, AG_STORE_READONLY,
	    AG_OK, "", true, false },
	{ "read-only, needs migration", setup_empty, AG_STORE_READONLY,
	    AG_PERMFAIL, ERR("read-only and needs migration") },
	{ "mode 0444 at current schema", setup_chmod_current, 0, AG_OK, "",
	    true, true },
	{ "mode 0444, needs migration", setup_chmod_empty, 0, AG_PERMFAIL,
	    "read-only and needs migration", false, true },
	{ "directory missing", setup_nothing, AG_STORE_CREATE, AG_PERMFAIL,
	    ERR("unable to open") },
};
#undef ERR

static void
test_fault(void **state)
{
	const struct fault_case *c = *state;
	char path[512], name[64];
	struct ag_store *s;
	struct timespec t0, t1;
	sqlite3 *holder;
	double secs;

	snprintf(name, sizeof(name), "fault%zu",
	    (size_t)(c - fault_cases));
	db_path(path, sizeof(path), name);
	if (c->setup == setup_nothing && (c->flags & AG_STORE_CREATE) &&
	    !(c->flags & AG_STORE_READONLY)) {
		snprintf(path, sizeof(path), "%s/no/such/dir/x.db", tmpdir);
	}
	holder = c->setup(path);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	s = open_want(c->label, path, c->flags, c->want);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	sqlite3_close(holder);
	secs = (double)(t1.tv_sec - t0.tv_sec) +
	    (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
	if (c->want != AG_OK) {
		err_says(c->label, s, path, c->says);
	} else if (ag_store_is_readonly(s) != c->readonly) {
		fail_msg("%s: read-only is %d", c->label,
		    ag_store_is_readonly(s));
	}
	if (c->want == AG_TEMPFAIL && (secs < 0.09 || secs > 5.0)) {
		fail_msg("%s: waited %.3f s for a %d ms timeout", c->label,
		    secs, TIMEOUT_MS);
	}
	ag_store_close(s);
}

/* A read-only handle refuses every write with a message that says so. */
static void
test_readonly_writes(void **state)
{
	static const char *const m[] = { "helo=example.com", NULL };
	struct ag_store *s;
	struct ag_policy *p;
	struct ag_rule r;
	char path[512];
	int64_t id = 0;

	(void)state;
	db_path(path, sizeof(path), "rowrites");
	setup_current(path);
	s = open_want("read-only writes", path, AG_STORE_READONLY, AG_OK);
	rule_make(&r, 1, 1, AG_LIMIT_UNSET, NULL, m);
	if (ag_store_rule_add(s, &r, &id) != AG_PERMFAIL) {
		fail_msg("read-only: rule add not refused");
	}
	ag_rule_clear(&r);
	err_says("read-only add", s, path, "read-only");
	if (ag_store_rule_del(s, 1) != AG_PERMFAIL ||
	    ag_store_rule_set_enabled(s, 1, false) != AG_PERMFAIL) {
		fail_msg("read-only: del/disable not refused");
	}
	err_says("read-only disable", s, path, "read-only");
	p = load_ok(s);
	ag_policy_free(p);
	ag_store_close(s);
}

/* Operations on an open handle while another connection holds the lock. */
static void
test_locked_ops(void **state)
{
	static const char *const m[] = { "sender=a@example.com", NULL };
	struct ag_store *s;
	struct ag_policy *p = NULL;
	struct ag_rule r;
	char path[512];
	sqlite3 *holder;
	int64_t id = 0;
	ag_status st;

	(void)state;
	db_path(path, sizeof(path), "lockedops");
	s = open_want("locked ops", path, AG_STORE_CREATE, AG_OK);
	holder = setup_locked(path);
	rule_make(&r, 1, 1, AG_LIMIT_UNSET, NULL, m);
	st = ag_store_rule_add(s, &r, &id);
	if (st != AG_TEMPFAIL) {
		fail_msg("locked: rule add gave %s", ag_status_str(st));
	}
	err_says("locked add", s, path, "database is locked");
	st = ag_store_load_policy(s, &p);
	if (st != AG_TEMPFAIL || p != NULL) {
		fail_msg("locked: load gave %s", ag_status_str(st));
	}
	err_says("locked load", s, path, "database is locked");
	if (ag_store_rule_del(s, 1) != AG_TEMPFAIL) {
		fail_msg("locked: del not a tempfail");
	}
	sqlite3_exec(holder, "ROLLBACK", NULL, NULL, NULL);
	sqlite3_close(holder);
	/* The lock gone, the same handle works again. */
	if (ag_store_rule_add(s, &r, &id) != AG_OK) {
		fail_msg("after unlock: %s", ag_store_errstr(s));
	}
	ag_rule_clear(&r);
	p = load_ok(s);
	if (ag_policy_count(p) != 1) {
		fail_msg("after unlock: %zu rules", ag_policy_count(p));
	}
	ag_policy_free(p);
	ag_store_close(s);
}

/* Corruption past the schema shows when the rules are read. */
static void
test_corrupt_rules(void **state)
{
	struct ag_store *s;
	struct ag_policy *p = NULL;
	char path[512], junk[4096];
	ag_status st;
	int64_t page;

	(void)state;
	db_path(path, sizeof(path), "corruptrules");
	s = open_want("corrupt rules", path, AG_STORE_CREATE, AG_OK);
	add_ok(s, 1, 1, AG_LIMIT_UNSET, "x", NULL);
	ag_store_close(s);
	page = raw_int(path, "SELECT rootpage FROM sqlite_master WHERE "
	    "name = 'rules'");
	memset(junk, 0x5a, sizeof(junk));
	write_at(path, (off_t)(page - 1) * 4096, junk, sizeof(junk));
	s = open_want("corrupt rules", path, 0, AG_OK);
	st = ag_store_load_policy(s, &p);
	if (st != AG_PERMFAIL || p != NULL) {
		fail_msg("corrupt rules: load gave %s", ag_status_str(st));
	}
	err_says("corrupt rules", s, path, "malformed");
	ag_store_close(s);
}

static void
test_null_handles(void **state)
{
	struct ag_store *s = NULL;

	(void)state;
	ag_store_close(NULL);
	if (ag_store_errstr(NULL) == NULL || ag_store_is_readonly(NULL)) {
		fail_msg("NULL handle not handled");
	}
	if (ag_store_open("", 0, TIMEOUT_MS, &s) != AG_INVALID || s == NULL) {
		fail_msg("empty path not refused");
	}
	ag_store_close(s);
}

/* The path removed, put back, and replaced by a copy under the handle. */
static void
test_moved(void **state)
{
	char path[512], away[600], copy[600];
	struct ag_store *s;

	(void)state;
	db_path(path, sizeof(path), "moved");
	snprintf(away, sizeof(away), "%s.away", path);
	snprintf(copy, sizeof(copy), "%s.copy", path);
	s = open_want("moved", path, AG_STORE_CREATE, AG_OK);
	if (ag_store_moved(s) || ag_store_moved(NULL)) {
		fail_msg("moved: reported before anything moved");
	}
	if (rename(path, away) != 0 || !ag_store_moved(s)) {
		fail_msg("moved: the path removed is not reported");
	}
	if (rename(away, path) != 0 || ag_store_moved(s)) {
		fail_msg("moved: the same file put back is reported");
	}
	raw_exec(copy, "CREATE TABLE t (x)");
	if (rename(copy, path) != 0 || !ag_store_moved(s)) {
		fail_msg("moved: another file in its place is not reported");
	}
	ag_store_close(s);
}

/* A database others may write, or one in a folder others may write to
 * (sticky or not), is refused with the reason; fixed, it opens. */
static void
test_world_writable(void **state)
{
	static const struct {
		const char *label;
		mode_t file, dir;
		const char *why;	/* NULL: opens */
	} cases[] = {
		{ "mode 0666", 0666, 0700, "world-writable" },
		{ "mode 0602", 0602, 0700, "world-writable" },
		{ "mode 0664", 0664, 0700, NULL },
		{ "folder 0777", 0640, 0777, "which anyone may write to" },
		{ "folder 1777 (sticky)", 0640, 01777,
		  "which anyone may write to" },
		{ "folder 0775", 0640, 0775, NULL },
		{ "mode 0600, folder 0700", 0600, 0700, NULL },
	};
	char path[512], label[96];
	struct ag_store *s;

	(void)state;
	db_path(path, sizeof(path), "perms");
	ag_store_close(open_want("perms: made", path, AG_STORE_CREATE, AG_OK));
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		if (chmod(path, cases[i].file) != 0 ||
		    chmod(tmpdir, cases[i].dir) != 0) {
			fail_msg("perms: chmod failed");
		}
		snprintf(label, sizeof(label), "perms, %s", cases[i].label);
		for (int ro = 0; ro < 2; ro++) {
			s = open_want(label, path, ro ? AG_STORE_READONLY : 0,
			    cases[i].why != NULL ? AG_PERMFAIL : AG_OK);
			if (cases[i].why != NULL) {
				err_says(label, s, path, cases[i].why);
			}
			ag_store_close(s);
		}
	}
	chmod(tmpdir, 0700);
}

/* ---- the table of tests ------------------------------------------------ */

/* Remove everything in the temporary directory, then the directory. */
static int
group_teardown(void **state)
{
	char path[600];
	struct dirent *de;
	DIR *d;

	(void)state;
	d = opendir(tmpdir);
	while (d != NULL && (de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") != 0 &&
		    strcmp(de->d_name, "..") != 0) {
			snprintf(path, sizeof(path), "%s/%s", tmpdir,
			    de->d_name);
			unlink(path);
		}
	}
	if (d != NULL) {
		closedir(d);
	}
	return rmdir(tmpdir) == 0 ? 0 : -1;
}

static int
group_setup(void **state)
{
	const char *base = getenv("TMPDIR");

	(void)state;
	snprintf(tmpdir, sizeof(tmpdir), "%s/t_store.XXXXXX",
	    base && base[0] ? base : "/tmp");
	return mkdtemp(tmpdir) != NULL ? 0 : -1;
}

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

int
main(void)
{
	static const struct CMUnitTest fixed[] = {
		cmocka_unit_test(test_create),
		cmocka_unit_test(test_migrate_empty),
		cmocka_unit_test(test_round_trip),
		cmocka_unit_test(test_unknown_id),
		cmocka_unit_test(test_bad_rule),
		cmocka_unit_test(test_bad_rows),
		cmocka_unit_test(test_spf_round_trip),
		cmocka_unit_test(test_rate_round_trip),
		cmocka_unit_test(test_rate_checkpoint),
		cmocka_unit_test(test_bad_spf_rule),
		cmocka_unit_test(test_action_cascade),
		cmocka_unit_test(test_migrate_v1),
		cmocka_unit_test(test_data_version),
		cmocka_unit_test(test_readonly_writes),
		cmocka_unit_test(test_locked_ops),
		cmocka_unit_test(test_corrupt_rules),
		cmocka_unit_test(test_null_handles),
		cmocka_unit_test(test_moved),
		cmocka_unit_test(test_world_writable),
	};
	struct CMUnitTest *t;
	size_t n = 0, i;
	int rc;

	t = calloc(NELEM(fixed) + NELEM(fault_cases), sizeof(*t));
	if (t == NULL) {
		return 1;
	}
	for (i = 0; i < NELEM(fixed); i++) {
		t[n++] = fixed[i];
	}
	for (i = 0; i < NELEM(fault_cases); i++) {
		/* Root writes through mode 0444: those cases cannot fail. */
		if (fault_cases[i].unprivileged && geteuid() == 0) {
			printf("# not run as root: %s\n", fault_cases[i].label);
			continue;
		}
		t[n++] = (struct CMUnitTest){ fault_cases[i].label, test_fault,
		    NULL, NULL, (void *)&fault_cases[i] };
	}
	rc = _cmocka_run_group_tests("store", t, n, group_setup,
	    group_teardown);
	free(t);
	return rc;
}

/*
 * msglog.c - the message history (see msglog.h): a row's copy and its
 * INSERT for the history writer, pruning, and the report's queries.
 *
 * The table (message_log) is created by migration 6 in store.c.  The
 * report is two aggregate queries in one read transaction: the totals,
 * then the groups, largest first; SQLite does the grouping, so memory
 * holds only the groups returned.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "history.h"
#include "msglog.h"

#define IP_MAX 45			/* INET6_ADDRSTRLEN - 1 */
#define ADDR_MAX 320			/* local@domain, RFC 5321 bounds */
#define DOMAIN_MAX 255
#define TAG_MAX 32			/* action, result and code names */

/* ---- the row -------------------------------------------------------------- */

/* Length of S, at most MAX; NULL is 0. */
static size_t
cut(const char *s, size_t max)
{
	size_t n = 0;

	while (s != NULL && n < max && s[n] != '\0') {
		n++;
	}
	return n;
}

/* Copy S (cut to MAX) to *P and advance it; NULL stays NULL. */
static const char *
put(char **p, const char *s, size_t max)
{
	size_t n = cut(s, max);
	char *d = *p;

	if (s == NULL) {
		return NULL;
	}
	memcpy(d, s, n);
	d[n] = '\0';
	*p = d + n + 1;
	return d;
}

/* The fields of a row, with their bounds, for the copy. */
#define ROW_STRINGS(X) \
	X(qid, AG_MSGLOG_QID_MAX) X(client_ip, IP_MAX) \
	X(client_name, AG_MSGLOG_TEXT_MAX) X(helo, AG_MSGLOG_TEXT_MAX) \
	X(sender, ADDR_MAX) X(sender_domain, DOMAIN_MAX) \
	X(sasl_user, AG_MSGLOG_TEXT_MAX) X(from_domain, DOMAIN_MAX) \
	X(action, TAG_MAX) X(code, TAG_MAX) X(reason, TAG_MAX) \
	X(spf, TAG_MAX) X(spf_helo, TAG_MAX) X(dkim, TAG_MAX) \
	X(dmarc, TAG_MAX) X(rate_key, AG_MSGLOG_KEY_MAX) X(would, TAG_MAX)

struct ag_msglog_row *
ag_msglog_copy(const struct ag_msglog_row *row)
{
	struct ag_msglog_row *q;
	size_t need = 0;
	char *p;

#define NEED(f, max) need += cut(row->f, max) + 1;
	ROW_STRINGS(NEED)
#undef NEED
	q = malloc(sizeof(*q) + need);	/* bounded: about 2 KB at most */
	if (q == NULL) {
		return NULL;
	}
	*q = *row;
	p = (char *)(q + 1);
#define PUT(f, max) q->f = put(&p, row->f, max);
	ROW_STRINGS(PUT)
#undef PUT
	return q;
}

/* Bind TEXT to COL; NULL (and "" when EMPTY_NULL) as SQL NULL. */
static void
bind_text(sqlite3_stmt *st, int col, const char *text, bool empty_null)
{
	if (text == NULL || (empty_null && text[0] == '\0')) {
		sqlite3_bind_null(st, col);
	} else {
		sqlite3_bind_text(st, col, text, -1, SQLITE_STATIC);
	}
}

/* An integer column; 0 as NULL when ZERO_NULL. */
static void
bind_int(sqlite3_stmt *st, int col, int64_t v, bool zero_null)
{
	if (zero_null && v == 0) {
		sqlite3_bind_null(st, col);
	} else {
		sqlite3_bind_int64(st, col, v);
	}
}

/* A count: SQLite integers are signed; saturate. */
static int64_t
count64(uint64_t v)
{
	return v > INT64_MAX ? INT64_MAX : (int64_t)v;
}

int
ag_msglog_insert(sqlite3_stmt *st, const struct ag_msglog_row *r)
{
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	bind_int(st, 1, r->time, false);
	bind_text(st, 2, r->qid != NULL ? r->qid : "", false);
	bind_text(st, 3, r->client_ip, true);
	bind_text(st, 4, r->client_name, true);
	bind_text(st, 5, r->helo, true);
	bind_text(st, 6, r->sender != NULL ? r->sender : "", false);
	bind_text(st, 7, r->sender_domain != NULL ? r->sender_domain : "",
	    false);
	bind_text(st, 8, r->sasl_user, true);
	bind_text(st, 9, r->from_domain, true);
	bind_int(st, 10, count64(r->rcpts), false);
	bind_int(st, 11, count64(r->rejected_rcpts), false);
	bind_int(st, 12, count64(r->size), false);
	bind_text(st, 13, r->action != NULL ? r->action : "unknown", false);
	bind_text(st, 14, r->code, true);
	bind_int(st, 15, r->rule, true);
	bind_text(st, 16, r->reason, true);
	bind_text(st, 17, r->spf, true);
	bind_text(st, 18, r->spf_helo, true);
	bind_text(st, 19, r->dkim, true);
	bind_text(st, 20, r->dmarc, true);
	bind_text(st, 21, r->rate_key, true);
	bind_int(st, 22, r->rate_rule, true);
	bind_text(st, 23, r->would, true);
	bind_int(st, 24, r->trusted, false);
	return sqlite3_step(st);
}

ag_status
ag_msglog_prune(struct ag_store *s, int64_t cutoff, size_t *ndeleted)
{
	return ag_store_delete_before(s, "message_log", cutoff,
	    "pruning the message history", ndeleted);
}

/* ---- names ----------------------------------------------------------------- */

static const char *const by_names[] = {
	[AG_BY_SENDER_DOMAIN] = "sender-domain",
	[AG_BY_SENDER] = "sender",
	[AG_BY_CLIENT] = "client",
	[AG_BY_SASL_USER] = "sasl-user",
	[AG_BY_RULE] = "rule",
	[AG_BY_RESULT] = "result",
};

static const char *const only_names[] = {
	[AG_ONLY_ALL] = "all",
	[AG_ONLY_ACCEPTED] = "accepted",
	[AG_ONLY_TEMPFAILED] = "tempfailed",
	[AG_ONLY_REJECTED] = "rejected",
	[AG_ONLY_ABORTED] = "aborted",
	[AG_ONLY_LIMITED] = "limited",
	[AG_ONLY_AUTH_FAIL] = "auth-fail",
};

#define NELEM(x) (sizeof(x) / sizeof((x)[0]))

/* The index of NAME in NAMES[N], or -1. */
static int
name_index(const char *const *names, size_t n, const char *name)
{
	for (size_t i = 0; name != NULL && i < n; i++) {
		if (strcmp(names[i], name) == 0) {
			return (int)i;
		}
	}
	return -1;
}

int
ag_msglog_by_parse(const char *name, enum ag_msglog_by *out)
{
	int i = name_index(by_names, NELEM(by_names), name);

	if (i < 0) {
		return -1;
	}
	*out = (enum ag_msglog_by)i;
	return 0;
}

const char *
ag_msglog_by_name(enum ag_msglog_by by)
{
	return (size_t)by < NELEM(by_names) ? by_names[by] : "unknown";
}

int
ag_msglog_only_parse(const char *name, enum ag_msglog_only *out)
{
	int i = name_index(only_names, NELEM(only_names), name);

	if (i < 0) {
		return -1;
	}
	*out = (enum ag_msglog_only)i;
	return 0;
}

const char *
ag_msglog_only_name(enum ag_msglog_only only)
{
	return (size_t)only < NELEM(only_names) ? only_names[only] :
	    "unknown";
}

ag_status
ag_msglog_parse_since(const char *s, int64_t now, int64_t *out)
{
	static const struct { char unit; int64_t seconds; } units[] = {
		{ 's', 1 }, { 'm', 60 }, { 'h', 3600 }, { 'd', 86400 },
		{ 'w', 604800 },
	};
	size_t len = s != NULL ? strlen(s) : 0;
	char *end;
	long long n;

	if (len < 2 || len > 8 || strspn(s, "0123456789") != len - 1) {
		return ag_history_parse_time(s, out);
	}
	errno = 0;
	n = strtoll(s, &end, 10);	/* at most 7 digits: no overflow */
	for (size_t i = 0; i < NELEM(units); i++) {
		if (*end == units[i].unit && errno == 0) {
			*out = now - (int64_t)n * units[i].seconds;
			return AG_OK;
		}
	}
	return AG_INVALID;
}

/* ---- the report ------------------------------------------------------------ */

/* The group key of each grouping, as SQL over message_log. */
static const char *const by_sql[] = {
	[AG_BY_SENDER_DOMAIN] = ("CASE WHEN sender = '' THEN '<>' "
	    "WHEN sender_domain = '' THEN '-' ELSE sender_domain END"),
	[AG_BY_SENDER] = "CASE sender WHEN '' THEN '<>' ELSE sender END",
	[AG_BY_CLIENT] = "COALESCE(client_ip, 'unknown')",
	[AG_BY_SASL_USER] = "COALESCE(sasl_user, '-')",
	[AG_BY_RULE] = ("COALESCE(CAST(COALESCE(rule, rate_rule) AS TEXT), "
	    "'-')"),
	[AG_BY_RESULT] = ("'spf=' || COALESCE(spf, '-') || ' dkim=' || "
	    "COALESCE(dkim, '-') || ' dmarc=' || COALESCE(dmarc, '-')"),
};

/* The filter of each --only, as SQL. */
static const char *const only_sql[] = {
	[AG_ONLY_ALL] = "1",
	[AG_ONLY_ACCEPTED] = "action IN ('accept', 'quarantine')",
	[AG_ONLY_TEMPFAILED] = "action = 'tempfail'",
	[AG_ONLY_REJECTED] = "action IN ('reject', 'discard')",
	[AG_ONLY_ABORTED] = "action = 'abort'",
	[AG_ONLY_LIMITED] = "rate_key IS NOT NULL",
	[AG_ONLY_AUTH_FAIL] = ("(spf = 'fail' OR dkim = 'fail' OR "
	    "dmarc = 'fail')"),
};

/* The aggregates, in the order counts_read reads them. */
#define COUNTS_SQL "COUNT(*)," \
	" TOTAL(action IN ('accept', 'quarantine'))," \
	" TOTAL(action = 'tempfail')," \
	" TOTAL(action IN ('reject', 'discard'))," \
	" TOTAL(action = 'abort')," \
	" TOTAL(spf = 'fail'), TOTAL(dkim = 'fail'), TOTAL(dmarc = 'fail')," \
	" TOTAL(rate_key IS NOT NULL)," \
	" TOTAL(rcpts), TOTAL(size), MIN(time), MAX(time)"

/* Read the COUNTS_SQL columns from COL on. */
static void
counts_read(sqlite3_stmt *st, int col, struct ag_msglog_counts *c)
{
	uint64_t *f[] = { &c->accepted, &c->tempfailed, &c->rejected,
		&c->aborted, &c->spf_fail, &c->dkim_fail, &c->dmarc_fail,
		&c->limited, &c->rcpts, &c->bytes };
	int64_t n = sqlite3_column_int64(st, col);

	c->messages = n > 0 ? (uint64_t)n : 0;
	for (size_t i = 0; i < NELEM(f); i++) {
		double d = sqlite3_column_double(st, col + 1 + (int)i);

		*f[i] = d > 0 ? (d < 1.8e19 ? (uint64_t)d : UINT64_MAX) : 0;
	}
	c->first = sqlite3_column_int64(st, col + 11);
	c->last = sqlite3_column_int64(st, col + 12);
}

/* Prepare SQL with the period and filter of Q bound as ?1 and ?2. */
static int
prepare(sqlite3 *db, const char *sql, const struct ag_msglog_query *q,
    sqlite3_stmt **st)
{
	int rc = sqlite3_prepare_v2(db, sql, -1, st, NULL);

	if (rc == SQLITE_OK) {
		sqlite3_bind_int64(*st, 1, q->begin);
		sqlite3_bind_int64(*st, 2, q->end);
	}
	return rc;
}

/* The totals and the number of groups; an SQLite result code. */
static int
report_totals(sqlite3 *db, const struct ag_msglog_query *q,
    struct ag_msglog_report *r)
{
	char sql[1024];
	sqlite3_stmt *st = NULL;
	int rc;

	snprintf(sql, sizeof(sql), "SELECT " COUNTS_SQL ", COUNT(DISTINCT %s)"
	    " FROM message_log WHERE time >= ?1 AND time < ?2 AND %s",
	    by_sql[q->by], only_sql[q->only]);
	rc = prepare(db, sql, q, &st);
	if (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		counts_read(st, 0, &r->total);
		r->ngroups = (size_t)sqlite3_column_int64(st, 13);
		rc = SQLITE_OK;
	}
	sqlite3_finalize(st);
	return rc;
}

/* Append the group at ST's current row to R; false when out of memory. */
static bool
group_add(sqlite3_stmt *st, struct ag_msglog_report *r, size_t *cap)
{
	const unsigned char *k = sqlite3_column_text(st, 0);
	struct ag_msglog_group *g;

	if (r->n == *cap) {
		size_t ncap = *cap == 0 ? 64 : *cap * 2;

		g = reallocarray(r->groups, ncap, sizeof(*g));
		if (g == NULL) {
			return false;
		}
		r->groups = g;
		*cap = ncap;
	}
	g = &r->groups[r->n];
	memset(g, 0, sizeof(*g));
	if ((g->key = strdup(k != NULL ? (const char *)k : "")) == NULL) {
		return false;
	}
	counts_read(st, 1, &g->c);
	r->n++;
	return true;
}

/* The groups, largest first; an SQLite result code (SQLITE_NOMEM). */
static int
report_groups(sqlite3 *db, const struct ag_msglog_query *q,
    struct ag_msglog_report *r)
{
	char sql[1400];
	sqlite3_stmt *st = NULL;
	size_t cap = 0;
	int rc;

	snprintf(sql, sizeof(sql), "SELECT %s AS k, " COUNTS_SQL
	    " FROM message_log WHERE time >= ?1 AND time < ?2 AND %s"
	    " GROUP BY k ORDER BY COUNT(*) DESC, k LIMIT ?3",
	    by_sql[q->by], only_sql[q->only]);
	rc = prepare(db, sql, q, &st);
	if (rc == SQLITE_OK) {
		sqlite3_bind_int64(st, 3, q->top == 0 ? -1 : (int64_t)q->top);
	}
	while (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		rc = group_add(st, r, &cap) ? SQLITE_OK : SQLITE_NOMEM;
	}
	sqlite3_finalize(st);
	return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

ag_status
ag_msglog_report(struct ag_store *s, const struct ag_msglog_query *q,
    struct ag_msglog_report **out)
{
	sqlite3 *db = ag_store_sqlite(s);
	struct ag_msglog_report *r;
	int rc;

	*out = NULL;
	if ((size_t)q->by >= NELEM(by_sql) ||
	    (size_t)q->only >= NELEM(only_sql)) {
		return AG_INVALID;
	}
	if ((r = calloc(1, sizeof(*r))) == NULL) {
		return AG_NOMEM;
	}
	rc = sqlite3_exec(db, "BEGIN", NULL, NULL, NULL);
	if (rc == SQLITE_OK) {
		rc = report_totals(db, q, r);
	}
	if (rc == SQLITE_OK) {
		rc = report_groups(db, q, r);
	}
	if (!sqlite3_get_autocommit(db)) {
		sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);	/* read only */
	}
	if (rc != SQLITE_OK) {
		ag_msglog_report_free(r);
		return rc == SQLITE_NOMEM ? AG_NOMEM :
		    ag_store_sqlite_error(s, rc, "reading the message history");
	}
	*out = r;
	return AG_OK;
}

void
ag_msglog_report_free(struct ag_msglog_report *r)
{
	if (r == NULL) {
		return;
	}
	for (size_t i = 0; i < r->n; i++) {
		free(r->groups[i].key);
	}
	free(r->groups);
	free(r);
}

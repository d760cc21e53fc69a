/*
 * signtable.c - the DKIM signing table (see signtable.h).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sqlite3.h>

#include "signtable.h"
#include "store.h"

struct ag_signtable {
	struct ag_sign_entry *v;
	size_t n;
};

void
ag_sign_entry_clear(struct ag_sign_entry *e)
{
	if (e == NULL) {
		return;
	}
	ag_sign_key_free(e->key);
	e->key = NULL;
	free(e->key_file);
	e->key_file = NULL;
	free(e->headers);
	e->headers = NULL;
}

/* A domain normalized and in A-labels (From domains are compared so,
 * and d= must be what DNS holds). */
static ag_status
domain_alabel(const char *in, char *out, size_t outsz)
{
	ag_status st = ag_domain_normalize(in, out, outsz);

	return st == AG_OK ? ag_domain_alabel(out, out, outsz) : st;
}

ag_status
ag_sign_pattern_normalize(const char *in, char *out, size_t outsz)
{
	if (in == NULL || outsz < 2) {
		return AG_INVALID;
	}
	if (strcmp(in, "*") == 0) {
		snprintf(out, outsz, "*");
		return AG_OK;
	}
	if (in[0] == '.') {
		out[0] = '.';
		return domain_alabel(in + 1, out + 1, outsz - 1);
	}
	return domain_alabel(in, out, outsz);
}

ag_status
ag_signtable_new(struct ag_sign_entry *entries, size_t n, bool load_keys,
    struct ag_signtable **out)
{
	struct ag_signtable *t;
	size_t i;

	*out = NULL;
	t = calloc(1, sizeof(*t));
	if (t == NULL) {
		for (i = 0; i < n; i++) {
			ag_sign_entry_clear(&entries[i]);
		}
		free(entries);
		return AG_NOMEM;
	}
	t->v = entries;
	t->n = n;
	for (i = 0; load_keys && i < n; i++) {
		struct ag_sign_entry *e = &t->v[i];

		if (!e->enabled || e->key_file == NULL) {
			continue;
		}
		if (ag_sign_key_load(e->key_file, e->alg, &e->key, e->error,
		    sizeof(e->error)) != AG_OK) {
			e->key = NULL;
			if (e->error[0] == '\0') {
				snprintf(e->error, sizeof(e->error),
				    "%s: cannot be loaded", e->key_file);
			}
		}
	}
	*out = t;
	return AG_OK;
}

void
ag_signtable_free(struct ag_signtable *t)
{
	size_t i;

	if (t == NULL) {
		return;
	}
	for (i = 0; i < t->n; i++) {
		ag_sign_entry_clear(&t->v[i]);
	}
	free(t->v);
	free(t);
}

size_t
ag_signtable_count(const struct ag_signtable *t)
{
	return t == NULL ? 0 : t->n;
}

const struct ag_sign_entry *
ag_signtable_get(const struct ag_signtable *t, size_t i)
{
	return t == NULL || i >= t->n ? NULL : &t->v[i];
}

/* How well PATTERN matches DOMAIN: 0 not at all, 1 "*", 2 + the suffix
 * length for ".suffix", SIZE_MAX for the domain itself. */
static size_t
match_rank(const char *pattern, const char *domain)
{
	size_t lp, ld;

	if (strcmp(pattern, "*") == 0) {
		return 1;
	}
	if (pattern[0] != '.') {
		return strcmp(pattern, domain) == 0 ? SIZE_MAX : 0;
	}
	/* ".example.com": example.com itself and every subdomain */
	lp = strlen(pattern);
	ld = strlen(domain);
	if (strcmp(pattern + 1, domain) == 0 ||
	    (ld > lp && strcmp(domain + ld - lp, pattern) == 0)) {
		return 2 + lp;
	}
	return 0;
}

size_t
ag_signtable_select(const struct ag_signtable *t, const char *domain,
    const struct ag_sign_entry **out, size_t max)
{
	size_t i, best = 0, n = 0, r;

	if (t == NULL || domain == NULL || domain[0] == '\0') {
		return 0;
	}
	for (i = 0; i < t->n; i++) {
		if (t->v[i].enabled &&
		    (r = match_rank(t->v[i].pattern, domain)) > best) {
			best = r;
		}
	}
	if (best == 0) {
		return 0;
	}
	for (i = 0; i < t->n && n < max; i++) {
		if (t->v[i].enabled &&
		    match_rank(t->v[i].pattern, domain) == best) {
			out[n++] = &t->v[i];
		}
	}
	return n;
}

int
ag_sign_canon_parse(const char *s, bool *header_simple, bool *body_simple)
{
	static const char *const forms[4] = { "relaxed/relaxed",
	    "relaxed/simple", "simple/relaxed", "simple/simple" };
	size_t i;

	for (i = 0; s != NULL && i < 4; i++) {
		if (strcmp(s, forms[i]) == 0) {
			*header_simple = i >= 2;
			*body_simple = (i & 1) != 0;
			return 0;
		}
	}
	return -1;
}

/* Is S a selector: dot-separated labels of letters, digits, '-', '_'? */
static bool
selector_ok(const char *s)
{
	size_t label = 0, n = 0;

	for (; *s != '\0'; s++, n++) {
		if (*s == '.') {
			if (label == 0) {
				return false;
			}
			label = 0;
			continue;
		}
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
		    (*s >= '0' && *s <= '9') || *s == '-' || *s == '_') ||
		    ++label > 63) {
			return false;
		}
	}
	return n > 0 && n < 64 && label > 0;
}

/* Fill E from one row of the loading query. */
static ag_status
row_entry(struct ag_store *s, sqlite3_stmt *st, struct ag_sign_entry *e)
{
	const char *pattern = (const char *)sqlite3_column_text(st, 1);
	const char *domain = (const char *)sqlite3_column_text(st, 2);
	const char *sel = (const char *)sqlite3_column_text(st, 3);
	const char *alg = (const char *)sqlite3_column_text(st, 4);
	const char *file = (const char *)sqlite3_column_text(st, 5);
	const char *canon = (const char *)sqlite3_column_text(st, 6);
	const char *headers = (const char *)sqlite3_column_text(st, 7);
	sqlite3_int64 expire = sqlite3_column_int64(st, 8);

	memset(e, 0, sizeof(*e));
	e->id = sqlite3_column_int64(st, 0);
	e->enabled = sqlite3_column_int(st, 9) != 0;
	if (pattern == NULL || ag_sign_pattern_normalize(pattern, e->pattern,
	    sizeof(e->pattern)) != AG_OK || domain == NULL ||
	    domain_alabel(domain, e->domain, sizeof(e->domain)) != AG_OK ||
	    sel == NULL || !selector_ok(sel) || alg == NULL ||
	    ag_sign_alg_parse(alg, &e->alg) != 0 || file == NULL ||
	    file[0] != '/' || canon == NULL || ag_sign_canon_parse(canon,
	    &e->header_simple, &e->body_simple) != 0 || expire < 0 ||
	    expire > 366LL * 86400 ||
	    (headers != NULL && strlen(headers) > AG_SIGN_HEADERS_MAX)) {
		return ag_store_fail(s, AG_PERMFAIL, "signing table entry %lld "
		    "cannot be read", (long long)e->id);
	}
	snprintf(e->selector, sizeof(e->selector), "%s", sel);
	e->expire_s = (unsigned)expire;
	if ((e->key_file = strdup(file)) == NULL ||
	    (headers != NULL && (e->headers = strdup(headers)) == NULL)) {
		return ag_store_fail(s, AG_NOMEM, "out of memory");
	}
	return AG_OK;
}

ag_status
ag_signtable_load(struct ag_store *s, bool load_keys,
    struct ag_signtable **out)
{
	struct ag_sign_entry *v = NULL, *nv;
	size_t n = 0, cap = 0, i;
	sqlite3_stmt *st = NULL;
	ag_status rv = AG_OK;
	int rc;

	*out = NULL;
	rc = sqlite3_prepare_v2(ag_store_sqlite(s), "SELECT id, pattern, "
	    "domain, selector, algorithm, key_file, canon, headers, "
	    "coalesce(expire, 0), enabled FROM sign_keys ORDER BY id", -1,
	    &st, NULL);
	if (rc != SQLITE_OK) {
		return ag_store_sqlite_error(s, rc, "reading the signing table");
	}
	while (rv == AG_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		if (n == cap) {
			cap = cap ? cap * 2 : 8;
			nv = reallocarray(v, cap, sizeof(*v));
			if (nv == NULL) {
				rv = ag_store_fail(s, AG_NOMEM, "out of memory");
				break;
			}
			v = nv;
		}
		rv = row_entry(s, st, &v[n]);
		n++;		/* cleared below even on error */
	}
	if (rv == AG_OK && rc != SQLITE_DONE) {
		rv = ag_store_sqlite_error(s, rc, "reading the signing table");
	}
	sqlite3_finalize(st);
	if (rv != AG_OK) {
		for (i = 0; i < n; i++) {
			ag_sign_entry_clear(&v[i]);
		}
		free(v);
		return rv;
	}
	return ag_signtable_new(v, n, load_keys, out);
}

ag_status
ag_signtable_add(struct ag_store *s, const struct ag_sign_entry *e,
    int64_t *id)
{
	static const char *const canon[4] = { "relaxed/relaxed",
	    "relaxed/simple", "simple/relaxed", "simple/simple" };
	char pattern[AG_ADDR_DOMAIN_MAX + 2], domain[AG_ADDR_DOMAIN_MAX + 1];
	sqlite3_stmt *st = NULL;
	int rc;

	if (ag_store_is_readonly(s)) {
		return ag_store_fail(s, AG_PERMFAIL, "database is read-only");
	}
	if (ag_sign_pattern_normalize(e->pattern, pattern, sizeof(pattern)) !=
	    AG_OK) {
		return ag_store_fail(s, AG_INVALID, "bad match pattern '%s' "
		    "(a domain, .domain for it and its subdomains, or *)",
		    e->pattern);
	}
	if (domain_alabel(e->domain, domain, sizeof(domain)) != AG_OK) {
		return ag_store_fail(s, AG_INVALID, "bad signing domain '%s'",
		    e->domain);
	}
	if (!selector_ok(e->selector)) {
		return ag_store_fail(s, AG_INVALID, "bad selector '%s'",
		    e->selector);
	}
	if (e->key_file == NULL || e->key_file[0] != '/') {
		return ag_store_fail(s, AG_INVALID, "the key file must be an "
		    "absolute path");
	}
	if (e->headers != NULL && strlen(e->headers) > AG_SIGN_HEADERS_MAX) {
		return ag_store_fail(s, AG_INVALID, "header list too long");
	}
	rc = sqlite3_prepare_v2(ag_store_sqlite(s), "INSERT INTO sign_keys "
	    "(pattern, domain, selector, algorithm, key_file, canon, headers, "
	    "expire, enabled, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
	    -1, &st, NULL);
	if (rc != SQLITE_OK) {
		return ag_store_sqlite_error(s, rc, "adding a signing key");
	}
	sqlite3_bind_text(st, 1, pattern, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, domain, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, e->selector, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 4, ag_sign_alg_name(e->alg), -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 5, e->key_file, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 6, canon[(e->header_simple ? 2 : 0) +
	    (e->body_simple ? 1 : 0)], -1, SQLITE_STATIC);
	if (e->headers != NULL) {
		sqlite3_bind_text(st, 7, e->headers, -1, SQLITE_STATIC);
	}
	if (e->expire_s > 0) {
		sqlite3_bind_int64(st, 8, e->expire_s);
	}
	sqlite3_bind_int(st, 9, e->enabled ? 1 : 0);
	sqlite3_bind_int64(st, 10, (sqlite3_int64)time(NULL));
	rc = sqlite3_step(st);
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE) {
		return ag_store_sqlite_error(s, rc, "adding a signing key");
	}
	*id = sqlite3_last_insert_rowid(ag_store_sqlite(s));
	return AG_OK;
}

/* Run one statement SQL on entry ID (bound as ?1) that must change a
 * row; WHAT names it in errors.  AG_NOTFOUND when there is none. */
static ag_status
entry_change(struct ag_store *s, const char *sql, int64_t id, int arg,
    const char *what)
{
	sqlite3_stmt *st = NULL;
	int rc;

	if (ag_store_is_readonly(s)) {
		return ag_store_fail(s, AG_PERMFAIL, "database is read-only");
	}
	rc = sqlite3_prepare_v2(ag_store_sqlite(s), sql, -1, &st, NULL);
	if (rc != SQLITE_OK) {
		return ag_store_sqlite_error(s, rc, what);
	}
	sqlite3_bind_int64(st, 1, id);
	if (sqlite3_bind_parameter_count(st) > 1) {
		sqlite3_bind_int(st, 2, arg);
	}
	rc = sqlite3_step(st);
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE) {
		return ag_store_sqlite_error(s, rc, what);
	}
	if (sqlite3_changes(ag_store_sqlite(s)) == 0) {
		return ag_store_fail(s, AG_NOTFOUND, "no such signing key: %lld",
		    (long long)id);
	}
	return AG_OK;
}

ag_status
ag_signtable_del(struct ag_store *s, int64_t id)
{
	return entry_change(s, "DELETE FROM sign_keys WHERE id = ?1", id, 0,
	    "deleting a signing key");
}

ag_status
ag_signtable_enable(struct ag_store *s, int64_t id, bool on)
{
	return entry_change(s, "UPDATE sign_keys SET enabled = ?2 WHERE "
	    "id = ?1", id, on ? 1 : 0, on ? "enabling a signing key" :
	    "disabling a signing key");
}

ag_status
ag_signtable_replace(struct ag_store *s, int64_t old, const struct
    ag_sign_entry *e, int64_t *id)
{
	sqlite3 *db = ag_store_sqlite(s);
	ag_status st;
	int rc;

	if (ag_store_is_readonly(s)) {
		return ag_store_fail(s, AG_PERMFAIL, "database is read-only");
	}
	rc = sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
	if (rc != SQLITE_OK) {
		return ag_store_sqlite_error(s, rc, "replacing a signing key");
	}
	/* added first, so that the new entry never takes the old id */
	if ((st = ag_signtable_add(s, e, id)) == AG_OK &&
	    (st = ag_signtable_del(s, old)) == AG_OK) {
		rc = sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
		if (rc == SQLITE_OK) {
			return AG_OK;
		}
		st = ag_store_sqlite_error(s, rc, "replacing a signing key");
	}
	/* the error of the failed step stays in S */
	sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
	return st;
}

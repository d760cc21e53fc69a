/*
 * store_load.c - reading the policy out of the store (see
 * ag_store_load_policy in store.h): the rules, their conditions
 * (rule_match) and their check actions (rule_action: kind, name, value),
 * in one read transaction.  A row the program does not understand (an
 * unknown field, kind, setting name or value) refuses the whole policy
 * with an error naming the rule, rather than loading the rule without
 * it.  Split from store.c, which writes them.
 */
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "store_int.h"

/* A growing array of rules being loaded. */
struct rule_vec {
	struct ag_rule *v;
	size_t n, cap;
};

/* Free the rules loaded so far. */
static void
rule_vec_free(struct rule_vec *rv)
{
	size_t i;

	for (i = 0; i < rv->n; i++) {
		ag_rule_clear(&rv->v[i]);
	}
	free(rv->v);
	rv->v = NULL;
	rv->n = rv->cap = 0;
}

/* Read a limit column: NULL is unset; negative is corrupt data. */
static bool
column_limit(sqlite3_stmt *st, int col, int64_t *out)
{
	if (sqlite3_column_type(st, col) == SQLITE_NULL) {
		*out = AG_LIMIT_UNSET;
		return true;
	}
	*out = sqlite3_column_int64(st, col);
	return *out >= 0;
}

/* Fill R from one row of the rules query. */
static ag_status
load_rule_row(struct ag_store *s, sqlite3_stmt *st, struct ag_rule *r)
{
	const unsigned char *comment;

	ag_rule_init(r);
	r->id = sqlite3_column_int64(st, 0);
	r->priority = sqlite3_column_int(st, 1);
	r->enabled = sqlite3_column_int(st, 2) != 0;
	r->dry_run = sqlite3_column_int(st, 3) != 0;
	if (!column_limit(st, 5, &r->max_size) ||
	    !column_limit(st, 6, &r->max_rcpts)) {
		return ag_store_fail(s, AG_PERMFAIL, "rule %lld: negative limit",
		    (long long)r->id);
	}
	comment = sqlite3_column_text(st, 4);
	if (comment != NULL &&
	    (r->comment = strdup((const char *)comment)) == NULL) {
		return ag_store_fail(s, AG_NOMEM, "out of memory");
	}
	return AG_OK;
}

/* Read every row of rules, ordered by id. */
static ag_status
load_rules(struct ag_store *s, struct rule_vec *rv)
{
	sqlite3_stmt *st = NULL;
	ag_status ret;
	int rc = SQLITE_DONE;

	ret = ag_store_prepare(s, "SELECT id, priority, enabled, dry_run, "
	    "comment, max_size, max_rcpts FROM rules ORDER BY id", &st,
	    "reading rules");
	while (ret == AG_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		if (rv->n == rv->cap) {
			size_t ncap = rv->cap ? rv->cap * 2 : 16;
			struct ag_rule *nv = reallocarray(rv->v, ncap,
			    sizeof(*nv));

			if (nv == NULL) {
				ret = ag_store_fail(s, AG_NOMEM, "out of memory");
				break;
			}
			rv->v = nv;
			rv->cap = ncap;
		}
		ret = load_rule_row(s, st, &rv->v[rv->n]);
		rv->n++;	/* cleared by rule_vec_free even on error */
	}
	if (ret == AG_OK && rc != SQLITE_DONE) {
		ret = ag_store_sqlite_error(s, rc, "reading rules");
	}
	sqlite3_finalize(st);
	return ret;
}

/* The rule with ID in RV (sorted by id), or NULL. */
static struct ag_rule *
find_rule(struct rule_vec *rv, int64_t id)
{
	size_t lo = 0, hi = rv->n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (rv->v[mid].id == id) {
			return &rv->v[mid];
		}
		if (rv->v[mid].id < id) {
			lo = mid + 1;
		} else {
			hi = mid;
		}
	}
	return NULL;
}

/* Append one condition read from the database to R, checking it. */
static ag_status
load_match_row(struct ag_store *s, struct ag_rule *r, const char *field,
    const char *value)
{
	char norm[AG_STORE_VALUE_MAX], err[128];
	struct ag_match *nm;
	enum ag_field f;

	if (field == NULL || ag_field_parse(field, &f) != 0) {
		return ag_store_fail(s, AG_PERMFAIL, "rule %lld: unknown field "
		    "'%s'", (long long)r->id, field ? field : "");
	}
	if (value == NULL || ag_match_normalize(f, value, norm, sizeof(norm),
	    err, sizeof(err)) != AG_OK) {
		return ag_store_fail(s, AG_PERMFAIL, "rule %lld: bad %s value: %s",
		    (long long)r->id, field, value ? err : "NULL");
	}
	nm = reallocarray(r->match, r->nmatch + 1, sizeof(*nm));
	if (nm == NULL) {
		return ag_store_fail(s, AG_NOMEM, "out of memory");
	}
	r->match = nm;
	memset(&nm[r->nmatch], 0, sizeof(*nm));
	nm[r->nmatch].field = f;
	if ((nm[r->nmatch].value = strdup(norm)) == NULL) {
		return ag_store_fail(s, AG_NOMEM, "out of memory");
	}
	r->nmatch++;
	return AG_OK;
}

/* Attach every condition to its rule. */
static ag_status
load_matches(struct ag_store *s, struct rule_vec *rv)
{
	sqlite3_stmt *st = NULL;
	struct ag_rule *r;
	ag_status ret;
	int rc = SQLITE_DONE;

	ret = ag_store_prepare(s, "SELECT rule_id, field, value FROM rule_match "
	    "ORDER BY rule_id, rowid", &st, "reading rule conditions");
	while (ret == AG_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		r = find_rule(rv, sqlite3_column_int64(st, 0));
		if (r == NULL) {
			continue;	/* orphan: foreign keys were off */
		}
		ret = load_match_row(s, r,
		    (const char *)sqlite3_column_text(st, 1),
		    (const char *)sqlite3_column_text(st, 2));
	}
	if (ret == AG_OK && rc != SQLITE_DONE) {
		ret = ag_store_sqlite_error(s, rc, "reading rule conditions");
	}
	sqlite3_finalize(st);
	return ret;
}


/* A rate row: a limit (name 1..16), on-limit or exempt. */
static ag_status
load_rate_row(struct ag_store *s, struct ag_rule *r, const char *name,
    const char *value)
{
	char err[160];
	enum ag_disp d;
	long n;
	char *end;

	if (strcmp(name, ACTION_RATE_ON_LIMIT) == 0) {
		if (ag_disp_parse(value, &d) != 0 || d == AG_DISP_ACCEPT) {
			return ag_store_fail(s, AG_PERMFAIL, "rule %lld: bad on-limit "
			    "'%s' (tempfail, reject or tag)", (long long)r->id,
			    value);
		}
		r->on_limit = d;
		return AG_OK;
	}
	if (strcmp(name, ACTION_RATE_EXEMPT) == 0) {
		if (strcmp(value, "yes") != 0) {
			return ag_store_fail(s, AG_PERMFAIL, "rule %lld: bad exempt "
			    "value '%s'", (long long)r->id, value);
		}
		r->exempt = true;
		return AG_OK;
	}
	n = strtol(name, &end, 10);
	if (*name < '1' || *name > '9' || *end != '\0' ||
	    n > AG_RATE_MAX_PER_RULE || (size_t)n != r->nrate + 1) {
		return ag_store_fail(s, AG_PERMFAIL, "rule %lld: unexpected rate row "
		    "'%s'", (long long)r->id, name);
	}
	if (ag_rate_spec_parse(value, &r->rate[r->nrate], err, sizeof(err)) !=
	    AG_OK) {
		return ag_store_fail(s, AG_PERMFAIL, "rule %lld: %s",
		    (long long)r->id, err);
	}
	r->nrate++;
	return AG_OK;
}

/* Apply one action read from the database to R, checking it. */
static ag_status
load_action_row(struct ag_store *s, struct ag_rule *r, const char *kind,
    const char *name, const char *value)
{
	enum ag_spf_result sr;
	enum ag_disp d;

	if (kind == NULL || name == NULL || value == NULL) {
		if (sqlite3_errcode(ag_store_sqlite(s)) == SQLITE_NOMEM) {
			return ag_store_fail(s, AG_NOMEM, "out of memory");
		}
		return ag_store_fail(s, AG_PERMFAIL, "rule %lld: action with a "
		    "NULL kind, name or value", (long long)r->id);
	}
	if (strcmp(kind, ACTION_KIND_DKIM) == 0) {
		if (strcmp(name, ACTION_DKIM_REQUIRE) != 0 ||
		    strcmp(value, "yes") != 0) {
			return ag_store_fail(s, AG_PERMFAIL, "rule %lld: unknown dkim "
			    "setting '%s=%s'", (long long)r->id, name, value);
		}
		r->dkim_require = 1;
		return AG_OK;
	}
	if (strcmp(kind, ACTION_KIND_RATE) == 0) {
		return load_rate_row(s, r, name, value);
	}
	if (strcmp(kind, ACTION_KIND_DMARC) == 0) {
		bool on = strcmp(value, "on") == 0;

		if ((!on && strcmp(value, "off") != 0) ||
		    (strcmp(name, "check") != 0 && strcmp(name, "enforce") != 0)) {
			return ag_store_fail(s, AG_PERMFAIL, "rule %lld: unknown dmarc "
			    "setting '%s=%s'", (long long)r->id, name, value);
		}
		*(strcmp(name, "check") == 0 ? &r->dmarc_check :
		    &r->dmarc_enforce) = on;
		return AG_OK;
	}
	if (strcmp(kind, ACTION_KIND_SPF) != 0) {
		return ag_store_fail(s, AG_PERMFAIL, "rule %lld: unknown action "
		    "kind '%s'", (long long)r->id, kind);
	}
	if (strcmp(name, ACTION_SPF_CHECK) == 0) {
		if (strcmp(value, "on") != 0 && strcmp(value, "off") != 0) {
			return ag_store_fail(s, AG_PERMFAIL, "rule %lld: bad spf "
			    "check value '%s' (on or off)", (long long)r->id,
			    value);
		}
		r->spf_check = strcmp(value, "on") == 0;
		return AG_OK;
	}
	if (ag_spf_result_parse(name, &sr) != 0) {
		return ag_store_fail(s, AG_PERMFAIL, "rule %lld: unknown spf "
		    "setting '%s'", (long long)r->id, name);
	}
	if (ag_disp_parse(value, &d) != 0) {
		return ag_store_fail(s, AG_PERMFAIL, "rule %lld: bad spf %s value "
		    "'%s' (accept, tag, tempfail or reject)", (long long)r->id,
		    name, value);
	}
	r->spf_disp[sr] = d;
	return AG_OK;
}

/* Attach every action to its rule. */
static ag_status
load_actions(struct ag_store *s, struct rule_vec *rv)
{
	sqlite3_stmt *st = NULL;
	struct ag_rule *r;
	ag_status ret;
	int rc = SQLITE_DONE;

	ret = ag_store_prepare(s, "SELECT rule_id, kind, name, value FROM "
	    "rule_action ORDER BY rule_id, rowid", &st,
	    "reading rule actions");
	while (ret == AG_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		r = find_rule(rv, sqlite3_column_int64(st, 0));
		if (r == NULL) {
			continue;	/* orphan: foreign keys were off */
		}
		ret = load_action_row(s, r,
		    (const char *)sqlite3_column_text(st, 1),
		    (const char *)sqlite3_column_text(st, 2),
		    (const char *)sqlite3_column_text(st, 3));
	}
	if (ret == AG_OK && rc != SQLITE_DONE) {
		ret = ag_store_sqlite_error(s, rc, "reading rule actions");
	}
	sqlite3_finalize(st);
	return ret;
}

/* Read rules, conditions and actions in one read transaction. */
ag_status
ag_store_load_policy(struct ag_store *s, struct ag_policy **out)
{
	struct rule_vec rv = { NULL, 0, 0 };
	ag_status st;

	*out = NULL;
	(void)ag_store_sqlite(s);	/* clears the last error */
	st = ag_store_exec(s, "BEGIN", "reading rules");
	if (st != AG_OK) {
		return st;
	}
	st = load_rules(s, &rv);
	if (st == AG_OK) {
		st = load_matches(s, &rv);
	}
	if (st == AG_OK) {
		st = load_actions(s, &rv);
	}
	if (st == AG_OK) {
		st = ag_store_exec(s, "COMMIT", "reading rules");
	}
	if (st != AG_OK) {
		ag_store_rollback(s);
		rule_vec_free(&rv);
		return st;
	}
	st = ag_policy_new(rv.v, rv.n, out);
	if (st != AG_OK) {
		return ag_store_fail(s, st, "building the policy: %s",
		    ag_status_str(st));
	}
	return AG_OK;
}

/*
 * store.c - the SQLite policy store.
 *
 * Schema changes are numbered migrations: migrations[i] takes the
 * database from user_version i to i + 1 and runs in its own IMMEDIATE
 * transaction together with the version bump, so a crash or a second
 * process migrating at the same time leaves either the old or the new
 * schema.  A new table is one more string in migrations[] and one more
 * in AG_STORE_SCHEMA_VERSION (a static assertion keeps them together).
 *
 * A rule is a row of rules, its conditions (rule_match) and its check
 * actions (rule_action: kind, name, value), written here and read back
 * into a policy by lib/store_load.c.
 *
 * Every statement is prepared with bound parameters; the only SQL built
 * with printf is "PRAGMA user_version = N" with an integer, which SQLite
 * cannot bind.
 *
 * A handle is one connection, used by one thread at a time (the
 * connection is opened without SQLite's own mutex).  Errors are kept in
 * the handle as "PATH: what went wrong".
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <sqlite3.h>

#include "metrics.h"
#include "store.h"
#include "store_int.h"

#define store_exec ag_store_exec
#define store_prepare ag_store_prepare
#define store_rollback ag_store_rollback

#define AG_STORE_ERR_MAX 512

/* Triggers that move policy_version on any change to table T. */
#define POLICY_TRIGGER(t, ev) \
	"CREATE TRIGGER " t "_" ev "_version AFTER " ev " ON " t \
	" BEGIN UPDATE policy_version SET version = version + 1; END;"
#define POLICY_TRIGGERS(t) POLICY_TRIGGER(t, "INSERT") \
	POLICY_TRIGGER(t, "UPDATE") POLICY_TRIGGER(t, "DELETE")

static const char *const migrations[] = {
	/* 0 -> 1: rules and their conditions */
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
	"CREATE INDEX rule_match_rule_id ON rule_match(rule_id);",
	/*
	 * 1 -> 2: the per-rule actions of the checks, one row per setting:
	 * (spf, RESULT, DISPOSITION) and (spf, check, on|off); DKIM and
	 * DMARC will add kinds.  The UNIQUE index also serves the lookup and
	 * the cascade by rule_id.
	 */
	"CREATE TABLE rule_action ("
	" rule_id INTEGER NOT NULL REFERENCES rules(id) ON DELETE CASCADE,"
	" kind TEXT NOT NULL,"
	" name TEXT NOT NULL,"
	" value TEXT NOT NULL,"
	" UNIQUE (rule_id, kind, name));",
	/*
	 * 2 -> 3: the checkpoint of the local rate counters: each live key
	 * and its TAT (ns since the epoch), per daemon instance (OWNER: host
	 * and socket), so that instances sharing one database keep their own.
	 * Rate limits themselves are rule_action rows (rate, 1..16, SPEC),
	 * (rate, on-limit, DISP) and (rate, exempt, yes).
	 *
	 * policy_version moves with every change to the rules (triggers), so
	 * a daemon reloads its policy for rule changes only, not when another
	 * instance saves its counters into the same file.
	 */
	"CREATE TABLE rate_state ("
	" owner TEXT NOT NULL,"
	" key BLOB NOT NULL,"
	" tat INTEGER NOT NULL,"
	" PRIMARY KEY (owner, key)) WITHOUT ROWID;"
	"CREATE TABLE policy_version ("
	" id INTEGER PRIMARY KEY CHECK (id = 1),"
	" version INTEGER NOT NULL);"
	"INSERT INTO policy_version VALUES (1, 0);"
	POLICY_TRIGGERS("rules") POLICY_TRIGGERS("rule_match")
	POLICY_TRIGGERS("rule_action"),
	/*
	 * 3 -> 4: the DMARC history (lib/history.c): one row per evaluated
	 * message, for aggregate reports (RFC 7489 7.2).  Enumerations are
	 * stored by name (none, reject, mfrom, ...).  The policy columns are
	 * NULL when no record was found; spf_* are NULL when SPF was not
	 * checked; dkim holds every signature as "RESULT:DOMAIN:SELECTOR",
	 * space-separated, with '%', ':', ' ' and bytes outside printable
	 * ASCII percent-encoded.  No triggers: history writes must not move
	 * policy_version (a policy reload per batch).  The indexes serve the
	 * report (by policy domain or From domain, and time) and pruning.
	 */
	"CREATE TABLE dmarc_result ("
	" id INTEGER PRIMARY KEY,"
	" time INTEGER NOT NULL,"
	" source_ip TEXT NOT NULL,"
	" header_from TEXT NOT NULL,"
	" envelope_from TEXT NOT NULL,"
	" policy_domain TEXT,"
	" p TEXT, sp TEXT, pct INTEGER, adkim TEXT, aspf TEXT, fo TEXT,"
	" result TEXT NOT NULL,"
	" disposition TEXT NOT NULL,"
	" dkim_aligned INTEGER NOT NULL,"
	" spf_aligned INTEGER NOT NULL,"
	" sampled_out INTEGER NOT NULL DEFAULT 0,"
	" reason TEXT,"
	" reason_comment TEXT,"
	" spf_domain TEXT,"
	" spf_scope TEXT,"
	" spf_result TEXT,"
	" dkim TEXT NOT NULL DEFAULT '');"
	"CREATE INDEX dmarc_result_policy ON dmarc_result(policy_domain, time);"
	"CREATE INDEX dmarc_result_from ON dmarc_result(header_from, time);"
	"CREATE INDEX dmarc_result_time ON dmarc_result(time);",
	/*
	 * 4 -> 5: the DKIM signing table (lib/signtable.c): which From
	 * domains (pattern) are signed as which d=, selector and key file.
	 * A change moves policy_version, so a new key is picked up like a
	 * rule change (a rollover without a restart).
	 */
	"CREATE TABLE sign_keys ("
	" id INTEGER PRIMARY KEY,"
	" pattern TEXT NOT NULL,"
	" domain TEXT NOT NULL,"
	" selector TEXT NOT NULL,"
	" algorithm TEXT NOT NULL,"
	" key_file TEXT NOT NULL,"
	" canon TEXT NOT NULL DEFAULT 'relaxed/relaxed',"
	" headers TEXT,"
	" expire INTEGER,"
	" enabled INTEGER NOT NULL DEFAULT 1,"
	" created INTEGER NOT NULL);"
	POLICY_TRIGGERS("sign_keys"),
	/*
	 * 5 -> 6: the message history (lib/msglog.c): one row per message
	 * the daemon logged, with what its log line says (the verdict, the
	 * results, the rate counter that refused), for `authgatectl report`.
	 * NULL is "not known" or "not checked"; sender and sender_domain are
	 * '' for the null sender.  Like dmarc_result: no triggers, pruned
	 * after HistoryDays, the time index serves both the report and the
	 * pruning.
	 */
	"CREATE TABLE message_log ("
	" id INTEGER PRIMARY KEY,"
	" time INTEGER NOT NULL,"
	" qid TEXT NOT NULL,"
	" client_ip TEXT,"
	" client_name TEXT,"
	" helo TEXT,"
	" sender TEXT NOT NULL,"
	" sender_domain TEXT NOT NULL,"
	" sasl_user TEXT,"
	" from_domain TEXT,"
	" rcpts INTEGER NOT NULL,"
	" rejected_rcpts INTEGER NOT NULL,"
	" size INTEGER NOT NULL,"
	" action TEXT NOT NULL,"
	" code TEXT,"
	" rule INTEGER,"
	" reason TEXT,"
	" spf TEXT, spf_helo TEXT, dkim TEXT, dmarc TEXT,"
	" rate_key TEXT,"
	" rate_rule INTEGER,"
	" would TEXT,"
	" trusted INTEGER NOT NULL DEFAULT 0);"
	"CREATE INDEX message_log_time ON message_log(time);",
};


_Static_assert(sizeof(migrations) / sizeof(migrations[0]) ==
    AG_STORE_SCHEMA_VERSION, "one migration per schema version");

struct ag_store {
	sqlite3 *db;
	char *path;
	bool readonly;
	bool have_id;		/* dev and ino of the file opened are known */
	dev_t dev;
	ino_t ino;
	char errstr[AG_STORE_ERR_MAX];
};

static ag_status store_err(struct ag_store *s, ag_status st,
    const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Record "PATH: message" in the handle and return ST. */
static ag_status
store_err(struct ag_store *s, ag_status st, const char *fmt, ...)
{
	va_list ap;
	int n;

	n = snprintf(s->errstr, sizeof(s->errstr), "%s: ", s->path);
	if (n < 0 || (size_t)n >= sizeof(s->errstr)) {
		return st;	/* the path alone fills it */
	}
	va_start(ap, fmt);
	vsnprintf(s->errstr + n, sizeof(s->errstr) - (size_t)n, fmt, ap);
	va_end(ap);
	return st;
}

/*
 * Map an SQLite result code to a status and record why, naming WHAT was
 * being done.  Busy and I/O trouble are temporary; the rest is not.
 */
static ag_status
store_sqlerr(struct ag_store *s, int rc, const char *what)
{
	const char *msg = s->db != NULL ? sqlite3_errmsg(s->db) :
	    sqlite3_errstr(rc);

	ag_metrics_store_error();
	switch (rc & 0xff) {
	case SQLITE_BUSY:
	case SQLITE_LOCKED:
		return store_err(s, AG_TEMPFAIL, "database is locked");
	case SQLITE_NOMEM:
		return store_err(s, AG_NOMEM, "%s: out of memory", what);
	case SQLITE_IOERR:
	case SQLITE_FULL:
	case SQLITE_PROTOCOL:
		return store_err(s, AG_TEMPFAIL, "%s: %s", what, msg);
	case SQLITE_READONLY:
		return store_err(s, AG_PERMFAIL, "%s: database is read-only",
		    what);
	default:
		return store_err(s, AG_PERMFAIL, "%s: %s", what, msg);
	}
}

/* Run SQL that needs no parameters and returns no rows. */
ag_status
ag_store_exec(struct ag_store *s, const char *sql, const char *what)
{
	int rc = sqlite3_exec(s->db, sql, NULL, NULL, NULL);

	return rc == SQLITE_OK ? AG_OK : store_sqlerr(s, rc, what);
}

/* One integer from a statement without parameters (a PRAGMA). */
static ag_status
store_int(struct ag_store *s, const char *sql, const char *what,
    int64_t *out)
{
	sqlite3_stmt *st = NULL;
	int rc;

	rc = sqlite3_prepare_v2(s->db, sql, -1, &st, NULL);
	if (rc == SQLITE_OK) {
		rc = sqlite3_step(st);
	}
	if (rc == SQLITE_ROW) {
		*out = sqlite3_column_int64(st, 0);
		rc = SQLITE_OK;
	} else if (rc == SQLITE_DONE) {
		*out = 0;
		rc = SQLITE_OK;
	}
	sqlite3_finalize(st);
	return rc == SQLITE_OK ? AG_OK : store_sqlerr(s, rc, what);
}

/* End a failed transaction, if one is open. */
void
ag_store_rollback(struct ag_store *s)
{
	if (!sqlite3_get_autocommit(s->db)) {
		sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
	}
}

/*
 * Apply the migrations from the current version on, each in its own
 * transaction.  The version is re-read under the write lock, so two
 * processes migrating at once do not apply a step twice.
 */
static ag_status
store_migrate(struct ag_store *s)
{
	char sql[64];
	int64_t v;
	ag_status st;

	for (;;) {
		st = store_exec(s, "BEGIN IMMEDIATE", "migrating");
		if (st != AG_OK) {
			return st;
		}
		st = store_int(s, "PRAGMA user_version", "migrating", &v);
		if (st != AG_OK || v >= AG_STORE_SCHEMA_VERSION) {
			break;
		}
		snprintf(sql, sizeof(sql), "PRAGMA user_version = %d",
		    (int)v + 1);
		st = store_exec(s, migrations[v], "migrating");
		if (st == AG_OK) {
			st = store_exec(s, sql, "migrating");
		}
		if (st == AG_OK) {
			st = store_exec(s, "COMMIT", "migrating");
		}
		if (st != AG_OK) {
			break;
		}
	}
	if (st != AG_OK) {
		store_rollback(s);
		return st;
	}
	return store_exec(s, "COMMIT", "migrating");
}

/*
 * Read the schema version and check that the file is a database we can
 * use: the header (user_version) and the schema table (a quick query,
 * not a full integrity check).  Sets *V and *NTABLES.
 */
static ag_status
store_probe(struct ag_store *s, int64_t *v, int64_t *ntables)
{
	ag_status st;

	st = store_exec(s, "BEGIN", "reading the schema");
	if (st == AG_OK) {
		st = store_int(s, "PRAGMA user_version", "reading the schema",
		    v);
	}
	if (st == AG_OK) {
		st = store_int(s, "SELECT count(*) FROM sqlite_master "
		    "WHERE type = 'table'", "reading the schema", ntables);
	}
	if (st == AG_OK) {
		st = store_exec(s, "COMMIT", "reading the schema");
	}
	if (st != AG_OK) {
		store_rollback(s);
	}
	return st;
}

/* Bring the schema to the current version, or say why it cannot be. */
static ag_status
store_check_schema(struct ag_store *s)
{
	int64_t v, ntables;
	ag_status st;

	st = store_probe(s, &v, &ntables);
	if (st != AG_OK) {
		return st;
	}
	if (v > AG_STORE_SCHEMA_VERSION) {
		return store_err(s, AG_PERMFAIL, "database schema version %lld "
		    "is newer than this authgate (%d)", (long long)v,
		    AG_STORE_SCHEMA_VERSION);
	}
	if (v < 0) {
		return store_err(s, AG_PERMFAIL, "bad schema version %lld",
		    (long long)v);
	}
	if (v == 0 && ntables > 0) {
		return store_err(s, AG_PERMFAIL, "not an authgate database "
		    "(it has tables but no schema version)");
	}
	if (v == AG_STORE_SCHEMA_VERSION) {
		return AG_OK;
	}
	if (s->readonly) {
		return store_err(s, AG_PERMFAIL, "database is read-only and "
		    "needs migration (schema version %lld, this authgate "
		    "uses %d)", (long long)v, AG_STORE_SCHEMA_VERSION);
	}
	return store_migrate(s);
}

ag_status
ag_store_check_perms(const char *path, char *err, size_t errlen)
{
	struct stat sb;
	char dir[4096];
	char *slash;

	if (stat(path, &sb) == 0 && (sb.st_mode & S_IWOTH)) {
		snprintf(err, errlen, "is world-writable, so anyone could "
		    "change the policy: refusing it (chmod o-w)");
		return AG_PERMFAIL;
	}
	if (snprintf(dir, sizeof(dir), "%s", path) >= (int)sizeof(dir)) {
		snprintf(err, errlen, "path too long");
		return AG_PERMFAIL;
	}
	slash = strrchr(dir, '/');
	if (slash == NULL) {
		snprintf(dir, sizeof(dir), ".");
	} else {
		slash[slash == dir] = '\0';	/* "/x.db": the folder is "/" */
	}
	/* sticky or not: SQLite makes its journal and WAL files next to
	 * the database, and a file put there first would be read as ours */
	if (stat(dir, &sb) == 0 && (sb.st_mode & S_IWOTH)) {
		snprintf(err, errlen, "is in %s, which anyone may write to (its "
		    "journal could be planted there): use a folder of its own",
		    dir);
		return AG_PERMFAIL;
	}
	return AG_OK;
}

/* Open the connection itself, with the flags that FLAGS ask for. */
static ag_status
store_connect(struct ag_store *s, int flags, int timeout_ms)
{
	struct stat sb;
	char why[AG_STORE_ERR_MAX];
	int oflags, rc;

	if ((flags & (AG_STORE_CREATE | AG_STORE_READONLY)) !=
	    AG_STORE_CREATE && stat(s->path, &sb) != 0 && errno == ENOENT) {
		return store_err(s, AG_PERMFAIL, "no such file");
	}
	if (ag_store_check_perms(s->path, why, sizeof(why)) != AG_OK) {
		return store_err(s, AG_PERMFAIL, "%s", why);
	}
	oflags = SQLITE_OPEN_NOMUTEX;
	if (flags & AG_STORE_READONLY) {
		oflags |= SQLITE_OPEN_READONLY;
	} else {
		oflags |= SQLITE_OPEN_READWRITE;
		if (flags & AG_STORE_CREATE) {
			oflags |= SQLITE_OPEN_CREATE;
		}
	}
	rc = sqlite3_open_v2(s->path, &s->db, oflags, NULL);
	if (rc != SQLITE_OK) {
		int e = s->db != NULL ? sqlite3_system_errno(s->db) : 0;

		return store_err(s, (rc & 0xff) == SQLITE_NOMEM ? AG_NOMEM :
		    AG_PERMFAIL, "%s%s%s", sqlite3_errstr(rc), e ? ": " : "",
		    e ? strerror(e) : "");
	}
	if (stat(s->path, &sb) == 0) {
		s->have_id = true;
		s->dev = sb.st_dev;
		s->ino = sb.st_ino;
	}
	sqlite3_extended_result_codes(s->db, 1);
	sqlite3_busy_timeout(s->db, timeout_ms > 0 ? timeout_ms : 0);
	s->readonly = (flags & AG_STORE_READONLY) != 0 ||
	    sqlite3_db_readonly(s->db, "main") == 1;
	return store_exec(s, "PRAGMA foreign_keys = ON", "opening");
}

/* Open, check and migrate the database (see store.h). */
ag_status
ag_store_open(const char *path, int flags, int timeout_ms,
    struct ag_store **out)
{
	struct ag_store *s;
	ag_status st;

	*out = NULL;
	s = calloc(1, sizeof(*s));
	if (s == NULL) {
		return AG_NOMEM;
	}
	s->path = strdup(path != NULL ? path : "");
	if (s->path == NULL) {
		free(s);
		return AG_NOMEM;
	}
	*out = s;
	if (path == NULL || path[0] == '\0') {
		return store_err(s, AG_INVALID, "no database path");
	}
	st = store_connect(s, flags, timeout_ms);
	if (st == AG_OK) {
		st = store_check_schema(s);
	}
	if (st == AG_OK) {
		s->errstr[0] = '\0';
	}
	return st;
}

/* Close the connection and free the handle; NULL is fine. */
void
ag_store_close(struct ag_store *s)
{
	if (s == NULL) {
		return;
	}
	sqlite3_close_v2(s->db);
	free(s->path);
	free(s);
}

/* The last error as "PATH: message"; "" after success. */
const char *
ag_store_errstr(const struct ag_store *s)
{
	if (s == NULL) {
		return "out of memory";
	}
	return s->errstr;
}

/* True when the handle cannot write. */
bool
ag_store_is_readonly(const struct ag_store *s)
{
	return s != NULL && s->readonly;
}

bool
ag_store_moved(const struct ag_store *s)
{
	struct stat sb;

	if (s == NULL || !s->have_id) {
		return false;
	}
	if (stat(s->path, &sb) != 0) {
		return errno == ENOENT || errno == ENOTDIR;
	}
	return sb.st_dev != s->dev || sb.st_ino != s->ino;
}

/* PRAGMA data_version: moves when another connection commits. */
ag_status
ag_store_data_version(struct ag_store *s, int64_t *out)
{
	s->errstr[0] = '\0';
	return store_int(s, "PRAGMA data_version", "reading data_version",
	    out);
}

/* The policy version: moves with every change to the rules. */
ag_status
ag_store_policy_version(struct ag_store *s, int64_t *out)
{
	s->errstr[0] = '\0';
	return store_int(s, "SELECT version FROM policy_version WHERE id = 1",
	    "reading the policy version", out);
}

/* Fail unless the handle may write. */
static ag_status
store_writable(struct ag_store *s)
{
	s->errstr[0] = '\0';
	if (s->readonly) {
		return store_err(s, AG_PERMFAIL, "database is read-only");
	}
	return AG_OK;
}

/* Prepare SQL or record the error. */
ag_status
ag_store_prepare(struct ag_store *s, const char *sql, sqlite3_stmt **st,
    const char *what)
{
	int rc = sqlite3_prepare_v2(s->db, sql, -1, st, NULL);

	return rc == SQLITE_OK ? AG_OK : store_sqlerr(s, rc, what);
}

/* Step a statement that returns no rows, then finalize it. */
static ag_status
store_step_done(struct ag_store *s, sqlite3_stmt *st, const char *what)
{
	int rc = sqlite3_step(st);

	sqlite3_finalize(st);
	return rc == SQLITE_DONE ? AG_OK : store_sqlerr(s, rc, what);
}

/* Bind a limit: NULL when the rule does not set it. */
static void
bind_limit(sqlite3_stmt *st, int col, int64_t v)
{
	if (v < 0) {
		sqlite3_bind_null(st, col);
	} else {
		sqlite3_bind_int64(st, col, v);
	}
}

/* Check the settings and normalize every condition into VALUES. */
static ag_status
rule_validate(struct ag_store *s, const struct ag_rule *r,
    char (*values)[AG_STORE_VALUE_MAX])
{
	char err[128];
	size_t i;

	if ((r->max_size < 0 && r->max_size != AG_LIMIT_UNSET) ||
	    (r->max_rcpts < 0 && r->max_rcpts != AG_LIMIT_UNSET)) {
		return store_err(s, AG_INVALID, "negative limit");
	}
	for (i = 0; i < AG_SPF_NRESULTS; i++) {
		if (r->spf_disp[i] != AG_LIMIT_UNSET &&
		    (r->spf_disp[i] < 0 || r->spf_disp[i] > AG_DISP_REJECT)) {
			return store_err(s, AG_INVALID, "spf %s: bad "
			    "disposition %lld", ag_spf_result_name((enum ag_spf_result)i),
			    (long long)r->spf_disp[i]);
		}
	}
	if (r->spf_check != AG_LIMIT_UNSET && r->spf_check != 0 &&
	    r->spf_check != 1) {
		return store_err(s, AG_INVALID, "spf check: bad value %lld "
		    "(0 or 1)", (long long)r->spf_check);
	}
	if (r->nmatch > 0 && r->match == NULL) {
		return store_err(s, AG_INVALID, "conditions missing");
	}
	if (r->nrate > AG_RATE_MAX_PER_RULE) {
		return store_err(s, AG_INVALID, "more than %d rate limits",
		    AG_RATE_MAX_PER_RULE);
	}
	for (i = 0; i < r->nrate; i++) {
		char spec[AG_RATE_SPEC_MAX];
		struct ag_rate_spec back;

		ag_rate_spec_format(&r->rate[i], spec, sizeof(spec));
		if (ag_rate_spec_parse(spec, &back, err, sizeof(err)) != AG_OK) {
			return store_err(s, AG_INVALID, "%s", err);
		}
	}
	if ((r->dmarc_check != AG_LIMIT_UNSET && r->dmarc_check != 0 &&
	    r->dmarc_check != 1) || (r->dmarc_enforce != AG_LIMIT_UNSET &&
	    r->dmarc_enforce != 0 && r->dmarc_enforce != 1)) {
		return store_err(s, AG_INVALID, "dmarc: bad value (0 or 1)");
	}
	if (r->on_limit != AG_LIMIT_UNSET && r->on_limit != AG_DISP_TAG &&
	    r->on_limit != AG_DISP_TEMPFAIL && r->on_limit != AG_DISP_REJECT) {
		return store_err(s, AG_INVALID, "on-limit: bad disposition %lld",
		    (long long)r->on_limit);
	}
	for (i = 0; i < r->nmatch; i++) {
		const struct ag_match *m = &r->match[i];

		if (ag_match_normalize(m->field, m->value, values[i],
		    AG_STORE_VALUE_MAX, err, sizeof(err)) != AG_OK) {
			return store_err(s, AG_INVALID, "%s=%s: %s",
			    ag_field_name(m->field), m->value ? m->value : "",
			    err);
		}
	}
	return AG_OK;
}

/* Insert the rules row; its id goes to *ID. */
static ag_status
rule_insert(struct ag_store *s, const struct ag_rule *r, int64_t *id)
{
	sqlite3_stmt *st = NULL;
	ag_status rv;

	rv = store_prepare(s, "INSERT INTO rules (priority, enabled, dry_run, "
	    "comment, max_size, max_rcpts, created) VALUES (?, ?, ?, ?, ?, "
	    "?, ?)", &st, "adding a rule");
	if (rv != AG_OK) {
		return rv;
	}
	sqlite3_bind_int(st, 1, r->priority);
	sqlite3_bind_int(st, 2, r->enabled ? 1 : 0);
	sqlite3_bind_int(st, 3, r->dry_run ? 1 : 0);
	if (r->comment != NULL) {
		sqlite3_bind_text(st, 4, r->comment, -1, SQLITE_STATIC);
	}
	bind_limit(st, 5, r->max_size);
	bind_limit(st, 6, r->max_rcpts);
	sqlite3_bind_int64(st, 7, (sqlite3_int64)time(NULL));
	rv = store_step_done(s, st, "adding a rule");
	if (rv == AG_OK) {
		*id = sqlite3_last_insert_rowid(s->db);
	}
	return rv;
}

/* Insert the conditions of rule ID. */
static ag_status
rule_insert_matches(struct ag_store *s, int64_t id, const struct ag_rule *r,
    char (*values)[AG_STORE_VALUE_MAX])
{
	sqlite3_stmt *st = NULL;
	ag_status rv;
	size_t i;
	int rc;

	rv = store_prepare(s, "INSERT INTO rule_match (rule_id, field, value) "
	    "VALUES (?, ?, ?)", &st, "adding a rule");
	for (i = 0; rv == AG_OK && i < r->nmatch; i++) {
		sqlite3_reset(st);
		sqlite3_bind_int64(st, 1, id);
		sqlite3_bind_text(st, 2, ag_field_name(r->match[i].field), -1,
		    SQLITE_STATIC);
		sqlite3_bind_text(st, 3, values[i], -1, SQLITE_STATIC);
		rc = sqlite3_step(st);
		if (rc != SQLITE_DONE) {
			rv = store_sqlerr(s, rc, "adding a rule");
		}
	}
	sqlite3_finalize(st);
	return rv;
}

/* Insert one rule_action row with a prepared statement ST. */
static ag_status
action_insert(struct ag_store *s, sqlite3_stmt *st, int64_t id,
    const char *kind, const char *name, const char *value)
{
	int rc;

	sqlite3_reset(st);
	sqlite3_bind_int64(st, 1, id);
	sqlite3_bind_text(st, 2, kind, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, name, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 4, value, -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	return rc == SQLITE_DONE ? AG_OK : store_sqlerr(s, rc, "adding a rule");
}

/* Insert the actions (SPF settings) of rule ID. */
static ag_status
rule_insert_actions(struct ag_store *s, int64_t id, const struct ag_rule *r)
{
	sqlite3_stmt *st = NULL;
	ag_status rv;
	size_t i;

	rv = store_prepare(s, "INSERT INTO rule_action (rule_id, kind, name, "
	    "value) VALUES (?, ?, ?, ?)", &st, "adding a rule");
	for (i = 0; rv == AG_OK && i < AG_SPF_NRESULTS; i++) {
		if (r->spf_disp[i] != AG_LIMIT_UNSET) {
			rv = action_insert(s, st, id, ACTION_KIND_SPF,
			    ag_spf_result_name((enum ag_spf_result)i),
			    ag_disp_name((enum ag_disp)r->spf_disp[i]));
		}
	}
	if (rv == AG_OK && r->spf_check != AG_LIMIT_UNSET) {
		rv = action_insert(s, st, id, ACTION_KIND_SPF,
		    ACTION_SPF_CHECK, r->spf_check ? "on" : "off");
	}
	if (rv == AG_OK && r->dkim_require == 1) {
		rv = action_insert(s, st, id, ACTION_KIND_DKIM,
		    ACTION_DKIM_REQUIRE, "yes");
	}
	if (rv == AG_OK && r->dmarc_check != AG_LIMIT_UNSET) {
		rv = action_insert(s, st, id, ACTION_KIND_DMARC, "check",
		    r->dmarc_check ? "on" : "off");
	}
	if (rv == AG_OK && r->dmarc_enforce != AG_LIMIT_UNSET) {
		rv = action_insert(s, st, id, ACTION_KIND_DMARC, "enforce",
		    r->dmarc_enforce ? "on" : "off");
	}
	for (i = 0; rv == AG_OK && i < r->nrate; i++) {
		char name[24], spec[AG_RATE_SPEC_MAX];

		snprintf(name, sizeof(name), "%zu", i + 1);
		rv = action_insert(s, st, id, ACTION_KIND_RATE, name,
		    ag_rate_spec_format(&r->rate[i], spec, sizeof(spec)));
	}
	if (rv == AG_OK && r->on_limit != AG_LIMIT_UNSET) {
		rv = action_insert(s, st, id, ACTION_KIND_RATE,
		    ACTION_RATE_ON_LIMIT, ag_disp_name((enum ag_disp)r->on_limit));
	}
	if (rv == AG_OK && r->exempt) {
		rv = action_insert(s, st, id, ACTION_KIND_RATE,
		    ACTION_RATE_EXEMPT, "yes");
	}
	sqlite3_finalize(st);
	return rv;
}

/* Insert a rule, its conditions and its actions in one transaction. */
ag_status
ag_store_rule_add(struct ag_store *s, const struct ag_rule *rule,
    int64_t *id)
{
	char (*values)[AG_STORE_VALUE_MAX] = NULL;
	int64_t newid = 0;
	ag_status st;

	st = store_writable(s);
	if (st != AG_OK) {
		return st;
	}
	values = calloc(rule->nmatch ? rule->nmatch : 1, sizeof(*values));
	if (values == NULL) {
		return store_err(s, AG_NOMEM, "out of memory");
	}
	st = rule_validate(s, rule, values);
	if (st == AG_OK) {
		st = store_exec(s, "BEGIN IMMEDIATE", "adding a rule");
	}
	if (st == AG_OK) {
		st = rule_insert(s, rule, &newid);
		if (st == AG_OK) {
			st = rule_insert_matches(s, newid, rule, values);
		}
		if (st == AG_OK) {
			st = rule_insert_actions(s, newid, rule);
		}
		if (st == AG_OK) {
			st = store_exec(s, "COMMIT", "adding a rule");
		}
		if (st != AG_OK) {
			store_rollback(s);
		}
	}
	free(values);
	if (st == AG_OK && id != NULL) {
		*id = newid;
	}
	return st;
}

/* Run a one-row change on rule ID; no row changed is AG_NOTFOUND. */
static ag_status
rule_change(struct ag_store *s, const char *sql, int64_t id, int on,
    const char *what)
{
	sqlite3_stmt *st = NULL;
	ag_status rv;

	rv = store_writable(s);
	if (rv == AG_OK) {
		rv = store_prepare(s, sql, &st, what);
	}
	if (rv != AG_OK) {
		return rv;
	}
	if (on >= 0) {
		sqlite3_bind_int(st, 1, on);
		sqlite3_bind_int64(st, 2, id);
	} else {
		sqlite3_bind_int64(st, 1, id);
	}
	rv = store_step_done(s, st, what);
	if (rv == AG_OK && sqlite3_changes(s->db) == 0) {
		return store_err(s, AG_NOTFOUND, "no such rule: %lld",
		    (long long)id);
	}
	return rv;
}

/* Delete a rule; conditions and actions go with it (ON DELETE CASCADE). */
ag_status
ag_store_rule_del(struct ag_store *s, int64_t id)
{
	return rule_change(s, "DELETE FROM rules WHERE id = ?", id, -1,
	    "deleting a rule");
}

/* Enable or disable a rule. */
ag_status
ag_store_rule_set_enabled(struct ag_store *s, int64_t id, bool on)
{
	return rule_change(s, "UPDATE rules SET enabled = ? WHERE id = ?", id,
	    on ? 1 : 0, on ? "enabling a rule" : "disabling a rule");
}

/* The connection, for modules with tables of their own (history.c,
 * signtable.c, store_rate.c). */
struct sqlite3 *
ag_store_sqlite(struct ag_store *s)
{
	s->errstr[0] = '\0';
	return s->db;
}

/* Record an SQLite failure of such a module in the handle. */
ag_status
ag_store_sqlite_error(struct ag_store *s, int rc, const char *what)
{
	return store_sqlerr(s, rc, what);
}

/* Record another failure of such a module: "PATH: TEXT". */
ag_status
ag_store_fail(struct ag_store *s, ag_status st, const char *fmt, ...)
{
	char text[AG_STORE_ERR_MAX];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	return store_err(s, st, "%s", text);
}

ag_status
ag_store_delete_before(struct ag_store *s, const char *table, int64_t cutoff,
    const char *what, size_t *ndeleted)
{
	char sql[160];
	sqlite3_stmt *st = NULL;
	size_t total = 0;
	int rc, n;

	/* in chunks, each its own transaction: the first prune after a long
	 * stop, or a smaller HistoryDays, may delete millions of rows, and
	 * one transaction would hold the write lock for all of them */
	snprintf(sql, sizeof(sql), "DELETE FROM %s WHERE id IN (SELECT id FROM"
	    " %s WHERE time < ?1 LIMIT %d)", table, table,
	    AG_STORE_DELETE_CHUNK);
	rc = sqlite3_prepare_v2(s->db, sql, -1, &st, NULL);
	if (rc == SQLITE_OK) {
		sqlite3_bind_int64(st, 1, cutoff);
	}
	do {
		if (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_DONE) {
			n = sqlite3_changes(s->db);
			total += (size_t)n;
			rc = sqlite3_reset(st);
		} else {
			n = 0;
		}
	} while (rc == SQLITE_OK && n == AG_STORE_DELETE_CHUNK);
	sqlite3_finalize(st);
	if (ndeleted != NULL) {
		*ndeleted = total;	/* what was deleted, even on an error */
	}
	return rc == SQLITE_OK ? AG_OK : store_sqlerr(s, rc, what);
}

/*
 * store.h - the SQLite policy store: schema, numbered migrations under
 * PRAGMA user_version, rule CRUD for authgatectl, and loading a policy
 * snapshot for the daemon.  Modules with tables of their own (the DMARC
 * history, lib/history.c) reach the connection through ag_store_sqlite.
 *
 * All SQL uses prepared statements with bound parameters.  A store handle
 * wraps one sqlite3 connection and must be used by one thread at a time.
 * Errors: every function returns a status; the detail text is kept in the
 * handle (ag_store_errstr) until the next call.
 *   AG_TEMPFAIL  database busy/locked past the timeout, or I/O error
 *   AG_PERMFAIL  corrupt, not a database, read-only when a write is needed,
 *                schema newer than this program
 *   AG_NOTFOUND  no such rule
 *   AG_INVALID   bad argument
 */
#ifndef AG_STORE_H
#define AG_STORE_H

#include <stdbool.h>
#include <stdint.h>

#include "policy.h"
#include "status.h"

/* The schema version this program writes (PRAGMA user_version). */
#define AG_STORE_SCHEMA_VERSION 6

enum {
	AG_STORE_CREATE = 1 << 0,	/* create file and schema if missing */
	AG_STORE_READONLY = 1 << 1	/* open read-only; never migrate */
};

struct ag_store;

/*
 * Open PATH.  With AG_STORE_CREATE the file is created and migrated to
 * the current schema; an older schema is migrated in one transaction.  A
 * file that cannot be written but already has the current schema opens
 * read-only (ag_store_is_readonly()).  TIMEOUT_MS bounds waits for locks.
 * On failure *OUT is still set (for ag_store_errstr) unless out of memory,
 * and must be closed.
 */
ag_status ag_store_open(const char *path, int flags, int timeout_ms,
    struct ag_store **out);
void ag_store_close(struct ag_store *s);		/* NULL is fine */
const char *ag_store_errstr(const struct ag_store *s);
bool ag_store_is_readonly(const struct ag_store *s);
/*
 * True when the path no longer names the file S has open: it was removed,
 * or another file was put in its place (a backup restored with mv).  The
 * handle still works on the old file, which nobody else sees any more.
 */
bool ag_store_moved(const struct ag_store *s);

/*
 * Is the database at PATH safe to take policy from?  AG_PERMFAIL, with
 * the reason in ERR (without the path), when others may write the file
 * or the folder it is in (sticky or not: its journal is made there).
 * Every open checks it; the daemon also at start, to refuse to run.
 */
ag_status ag_store_check_perms(const char *path, char *err, size_t errlen);

/*
 * PRAGMA data_version: changes whenever another connection commits a
 * change to the file.  Cheap; used to pick up rule changes live.
 */
ag_status ag_store_data_version(struct ag_store *s, int64_t *out);

/* Read every rule (enabled or not) into a new policy snapshot. */
ag_status ag_store_load_policy(struct ag_store *s, struct ag_policy **out);

/*
 * Insert RULE (its id is ignored) with its matches; the new id is stored
 * in *ID.  Values are normalized with ag_match_normalize first.
 */
ag_status ag_store_rule_add(struct ag_store *s, const struct ag_rule *rule,
    int64_t *id);
ag_status ag_store_rule_del(struct ag_store *s, int64_t id);
ag_status ag_store_rule_set_enabled(struct ag_store *s, int64_t id, bool on);

/*
 * A number that moves with every change to the rules (kept by triggers):
 * data_version also moves when another daemon saves its rate counters,
 * which must not make a policy reload.
 */
ag_status ag_store_policy_version(struct ag_store *s, int64_t *out);

/*
 * The checkpoint of the local rate counters (table rate_state), kept per
 * OWNER (one daemon instance).  Save replaces OWNER's saved keys, in one
 * transaction, with what NEXT yields (it returns 1 with a key, 0 at the
 * end); Load calls CB for each of OWNER's keys.  TATs are nanoseconds
 * since the epoch.
 */
ag_status ag_store_rate_save(struct ag_store *s, const char *owner,
    int (*next)(void *arg, const void **key, size_t *keylen, uint64_t *tat),
    void *arg, size_t *nsaved);
ag_status ag_store_rate_load(struct ag_store *s, const char *owner,
    void (*cb)(void *arg, const void *key, size_t keylen, uint64_t tat),
    void *arg);

/*
 * For a module that keeps a table of its own in the store (lib/history.c):
 * the connection (same rule: one thread at a time; never closed by the
 * caller; the handle's error is cleared), recording an SQLite result code
 * RC of WHAT in the handle as the status it maps to (busy, locked and I/O
 * trouble: AG_TEMPFAIL), and recording any other failure ST with its text.
 */
struct sqlite3;
struct sqlite3 *ag_store_sqlite(struct ag_store *s);
ag_status ag_store_sqlite_error(struct ag_store *s, int rc, const char *what);
ag_status ag_store_fail(struct ag_store *s, ag_status st, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/*
 * Delete the rows of TABLE (a history table with an id and a time column:
 * a fixed name, never input) whose time is before CUTOFF, at most
 * AG_STORE_DELETE_CHUNK rows a transaction; *NDELETED (may be NULL) gets
 * their number.  Errors name WHAT.
 */
#define AG_STORE_DELETE_CHUNK 10000
ag_status ag_store_delete_before(struct ag_store *s, const char *table,
    int64_t cutoff, const char *what, size_t *ndeleted);

#endif

/*
 * store_rate.c - the checkpoint of the local rate counters in the store
 * (table rate_state; see ag_store_rate_save in store.h), kept apart from
 * store.c like the other modules with a table of their own: through the
 * store's connection (ag_store_sqlite) and error recording.
 */
#include <stdint.h>
#include <string.h>

#include <sqlite3.h>

#include "store_int.h"

#define SAVING "saving rate counters"
#define READING "reading rate counters"

/* Replace OWNER's checkpoint with what NEXT yields, atomically. */
ag_status
ag_store_rate_save(struct ag_store *s, const char *owner,
    int (*next)(void *arg, const void **key, size_t *keylen, uint64_t *tat),
    void *arg, size_t *nsaved)
{
	sqlite3_stmt *st = NULL;
	const void *key;
	size_t keylen, n = 0;
	uint64_t tat;
	ag_status rv;
	int rc;

	*nsaved = 0;
	(void)ag_store_sqlite(s);	/* clears the last error */
	if (ag_store_is_readonly(s)) {
		return ag_store_fail(s, AG_PERMFAIL, "database is read-only");
	}
	if ((rv = ag_store_exec(s, "BEGIN IMMEDIATE", SAVING)) != AG_OK) {
		return rv;
	}
	rv = ag_store_prepare(s, "DELETE FROM rate_state WHERE owner = ?",
	    &st, SAVING);
	if (rv == AG_OK) {
		sqlite3_bind_text(st, 1, owner, -1, SQLITE_STATIC);
		rc = sqlite3_step(st);
		if (rc != SQLITE_DONE) {
			rv = ag_store_sqlite_error(s, rc, SAVING);
		}
		sqlite3_finalize(st);
		st = NULL;
	}
	if (rv == AG_OK) {
		rv = ag_store_prepare(s, "INSERT OR REPLACE INTO rate_state "
		    "(owner, key, tat) VALUES (?, ?, ?)", &st, SAVING);
	}
	while (rv == AG_OK && next(arg, &key, &keylen, &tat) == 1) {
		if (tat > INT64_MAX) {
			continue;
		}
		sqlite3_reset(st);
		sqlite3_bind_text(st, 1, owner, -1, SQLITE_STATIC);
		sqlite3_bind_blob(st, 2, key, (int)keylen, SQLITE_STATIC);
		sqlite3_bind_int64(st, 3, (sqlite3_int64)tat);
		rc = sqlite3_step(st);
		if (rc != SQLITE_DONE) {
			rv = ag_store_sqlite_error(s, rc, SAVING);
		}
		n++;
	}
	sqlite3_finalize(st);
	if (rv == AG_OK) {
		rv = ag_store_exec(s, "COMMIT", SAVING);
	}
	if (rv != AG_OK) {
		/* keep the first error: the rollback's own is of no use */
		ag_store_rollback(s);
		return rv;
	}
	*nsaved = n;
	return AG_OK;
}

/* Read OWNER's checkpoint back. */
ag_status
ag_store_rate_load(struct ag_store *s, const char *owner,
    void (*cb)(void *arg, const void *key, size_t keylen, uint64_t tat),
    void *arg)
{
	sqlite3_stmt *st = NULL;
	ag_status rv;
	int rc = SQLITE_DONE, len;
	sqlite3_int64 tat;

	rv = ag_store_prepare(s, "SELECT key, tat FROM rate_state WHERE "
	    "owner = ?", &st, READING);
	if (rv == AG_OK) {
		sqlite3_bind_text(st, 1, owner, -1, SQLITE_STATIC);
	}
	while (rv == AG_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		const void *k = sqlite3_column_blob(st, 0);

		len = sqlite3_column_bytes(st, 0);
		tat = sqlite3_column_int64(st, 1);
		if (k == NULL || len <= 0 || tat <= 0) {
			continue;	/* not ours: skip, never trust it */
		}
		cb(arg, k, (size_t)len, (uint64_t)tat);
	}
	if (rv == AG_OK && rc != SQLITE_DONE) {
		rv = ag_store_sqlite_error(s, rc, READING);
	}
	sqlite3_finalize(st);
	return rv;
}

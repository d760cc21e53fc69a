/*
 * store_int.h - what the parts of the store (store.c: the connection,
 * the schema and the rules written; store_load.c: the policy read back;
 * store_rate.c: the rate checkpoint) share.  Private to lib/.
 */
#ifndef AG_STORE_INT_H
#define AG_STORE_INT_H

#include <sqlite3.h>

#include "store.h"

#define AG_STORE_VALUE_MAX 512	/* a normalized condition value */

/* rule_action rows: kind, and the names of their settings */
#define ACTION_KIND_SPF "spf"
#define ACTION_SPF_CHECK "check"	/* the name of spf_check's row */
#define ACTION_KIND_DKIM "dkim"
#define ACTION_DKIM_REQUIRE "require"	/* value "yes" */
#define ACTION_KIND_DMARC "dmarc"	/* check and enforce: on|off */
#define ACTION_KIND_RATE "rate"
#define ACTION_RATE_ON_LIMIT "on-limit"
#define ACTION_RATE_EXEMPT "exempt"	/* value "yes" */

/* Run SQL that needs no parameters and returns no rows; prepare SQL into
 * *ST; a failure is recorded in S, as "PATH: WHAT: SQLite's word". */
ag_status ag_store_exec(struct ag_store *s, const char *sql,
    const char *what);
ag_status ag_store_prepare(struct ag_store *s, const char *sql,
    sqlite3_stmt **st, const char *what);

/* End a failed transaction, if one is open. */
void ag_store_rollback(struct ag_store *s);

#endif

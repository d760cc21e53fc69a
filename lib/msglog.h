/*
 * msglog.h - the message history: one row per message the daemon logged
 * (the same messages, and the same facts, as its syslog line), kept in
 * the store for HistoryDays, and the report `authgatectl report` reads
 * back from it (top senders, failure rates, limited senders).
 *
 * Rows travel through the history queue (history.h: ag_history_push_msg)
 * and are written by the engine's watcher with the DMARC rows, in the
 * same transactions; sessions never touch SQLite.  This module owns the
 * row's copy, its INSERT, and the report's queries.
 *
 * Ownership: ag_msglog_copy returns one allocation (free() it); the
 * report is the caller's to ag_msglog_report_free.
 * Thread safety: none needed; every function works on what it is given.
 */
#ifndef AG_MSGLOG_H
#define AG_MSGLOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <sqlite3.h>

#include "status.h"
#include "store.h"

/* Bounds of the stored texts (longer input is cut). */
#define AG_MSGLOG_QID_MAX 63
#define AG_MSGLOG_TEXT_MAX 255		/* client name, HELO, SASL user */
#define AG_MSGLOG_KEY_MAX 300		/* a rate counter's key */

/* One message, as its log line says it ended. */
struct ag_msglog_row {
	int64_t time;			/* Unix seconds */
	const char *qid;		/* "" before the MTA names it */
	const char *client_ip;		/* NULL: unknown */
	const char *client_name;	/* "" or NULL: none */
	const char *helo;		/* as given, "" or NULL: none */
	const char *sender;		/* address, "" for <> */
	const char *sender_domain;	/* normalized, "" for <> */
	const char *sasl_user;		/* NULL: not authenticated */
	const char *from_domain;	/* RFC5322.From domain, NULL: none */
	uint64_t rcpts, rejected_rcpts;
	uint64_t size;
	const char *action;		/* accept tempfail reject discard
					 * quarantine abort */
	const char *code;		/* enhanced status code, "" or NULL */
	int64_t rule;			/* the rule that decided, 0: none */
	const char *reason;		/* the verdict's short tag, or NULL */
	/* results by name as Authentication-Results writes them; NULL:
	 * not checked */
	const char *spf, *spf_helo, *dkim, *dmarc;
	const char *rate_key;		/* the counter that refused, or NULL */
	int64_t rate_rule;		/* its rule, 0: none */
	const char *would;		/* a dry-run's action, or NULL */
	bool trusted;
};

/* A copy of ROW with its strings in the same allocation (cut to their
 * bounds), or NULL when out of memory. */
struct ag_msglog_row *ag_msglog_copy(const struct ag_msglog_row *row);

/* The INSERT that ag_msglog_insert binds. */
#define AG_MSGLOG_INSERT_SQL "INSERT INTO message_log (time, qid," \
	" client_ip, client_name, helo, sender, sender_domain, sasl_user," \
	" from_domain, rcpts, rejected_rcpts, size, action, code, rule," \
	" reason, spf, spf_helo, dkim, dmarc, rate_key, rate_rule, would," \
	" trusted) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?," \
	" ?, ?, ?, ?, ?, ?, ?, ?)"

/* Bind ROW to ST (prepared from AG_MSGLOG_INSERT_SQL) and step it: an
 * SQLite result code (SQLITE_DONE when inserted). */
int ag_msglog_insert(sqlite3_stmt *st, const struct ag_msglog_row *row);

/* Delete the rows with time < CUTOFF; *NDELETED may be NULL. */
ag_status ag_msglog_prune(struct ag_store *s, int64_t cutoff,
    size_t *ndeleted);

/* ---- the report ---------------------------------------------------------- */

/* What the rows are grouped by. */
enum ag_msglog_by {
	AG_BY_SENDER_DOMAIN = 0,
	AG_BY_SENDER,
	AG_BY_CLIENT,
	AG_BY_SASL_USER,
	AG_BY_RULE,
	AG_BY_RESULT			/* "spf=X dkim=Y dmarc=Z" */
};

/* Which rows count (all of them, or only these). */
enum ag_msglog_only {
	AG_ONLY_ALL = 0,
	AG_ONLY_ACCEPTED,		/* accept, quarantine */
	AG_ONLY_TEMPFAILED,
	AG_ONLY_REJECTED,		/* reject, discard */
	AG_ONLY_ABORTED,
	AG_ONLY_LIMITED,		/* a rate limit refused (or would) */
	AG_ONLY_AUTH_FAIL		/* spf, dkim or dmarc fail */
};

/* The counts of one group, or of the whole period. */
struct ag_msglog_counts {
	uint64_t messages;
	uint64_t accepted, tempfailed, rejected, aborted;
	uint64_t spf_fail, dkim_fail, dmarc_fail;
	uint64_t limited;
	uint64_t rcpts, bytes;
	int64_t first, last;		/* time of the first and last row */
};

struct ag_msglog_group {
	char *key;
	struct ag_msglog_counts c;
};

struct ag_msglog_query {
	int64_t begin, end;		/* rows with begin <= time < end */
	enum ag_msglog_by by;
	enum ag_msglog_only only;
	size_t top;			/* groups returned; 0: all */
};

struct ag_msglog_report {
	struct ag_msglog_counts total;	/* every row of the period and filter */
	size_t ngroups;			/* groups in the period */
	size_t n;			/* returned: the largest first */
	struct ag_msglog_group *groups;
};

/*
 * Count the rows of Q's period in one read transaction: the totals, and
 * the groups by Q->by, most messages first (ties by key).  An empty
 * period is AG_OK with zero counts.  Errors are in S.
 */
ag_status ag_msglog_report(struct ag_store *s, const struct ag_msglog_query *q,
    struct ag_msglog_report **out);
void ag_msglog_report_free(struct ag_msglog_report *r);

/* Names on the command line: "sender-domain", "limited", ... */
int ag_msglog_by_parse(const char *name, enum ag_msglog_by *out);
const char *ag_msglog_by_name(enum ag_msglog_by by);
int ag_msglog_only_parse(const char *name, enum ag_msglog_only *out);
const char *ag_msglog_only_name(enum ag_msglog_only only);

/*
 * A report boundary: what ag_history_parse_time takes, or a time before
 * NOW: digits and a unit, "90m", "2h", "7d", "1w" (s, m, h, d, w).
 * AG_INVALID for anything else.
 */
ag_status ag_msglog_parse_since(const char *s, int64_t now, int64_t *out);

#endif

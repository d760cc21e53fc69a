/*
 * history.h - the DMARC history: what each evaluated message's DMARC
 * check found (RFC 7489 7.2), kept in the store for HistoryDays, and the
 * aggregate report (RFC 7489 Appendix C XML) read back from it.  The
 * queue also carries the rows of the message history (msglog.h), which
 * the same writer puts in their own table.
 *
 * Sessions never touch SQLite.  At the end of a message a session copies
 * its results into a bounded in-memory queue (ag_history_push: a mutex,
 * one allocation); the engine's watcher thread writes the queue to the
 * store on its own connection (ag_history_flush: one transaction per
 * batch) and prunes old rows (ag_history_prune).  A full queue drops
 * rows: they are counted and the first of each burst is logged.
 *
 * Ownership: push copies everything it is given; nothing is kept.
 * Thread safety: push, pending and dropped from any thread; flush from
 * one thread at a time (it holds the store, which is single-threaded);
 * the report and prune functions only use the store passed in.
 */
#ifndef AG_HISTORY_H
#define AG_HISTORY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "dkim.h"
#include "dmarc.h"
#include "dmarcrec.h"
#include "msglog.h"
#include "spf.h"
#include "status.h"
#include "store.h"

#define AG_HISTORY_QUEUE_MAX 10000	/* rows waiting for the writer */
#define AG_HISTORY_BATCH 500		/* rows per write transaction */
#define AG_HISTORY_DKIM_MAX 8		/* signatures kept per message */
#define AG_HISTORY_PRUNE_INTERVAL 3600	/* seconds between prunes */

/* One DKIM signature's result (RFC 7489 Appendix C DKIMAuthResultType). */
struct ag_history_dkim {
	const char *domain;		/* d= */
	const char *selector;		/* s=, or "" */
	enum ag_dkim_res result;
};

/* What one evaluated message leaves in the history. */
struct ag_history_row {
	int64_t time;			/* Unix seconds */
	const char *source_ip;		/* as ag_ip_format writes it */
	const char *header_from;	/* RFC5322.From domain; "" if unusable */
	const char *envelope_from;	/* RFC5321.MailFrom domain; "" for <> */
	/* the policy record, when one was found (policy_domain not NULL) */
	const char *policy_domain;	/* where the record was found */
	enum ag_dmarc_policy p, sp;
	unsigned pct;
	bool adkim_strict, aspf_strict;
	unsigned fo;			/* AG_DMARC_FO_* bits */
	enum ag_dmarc_res result;
	/* what was done: after pct and local overrides; none for a pass */
	enum ag_dmarc_policy disposition;
	bool sampled_out;		/* pct made it lighter */
	const char *reason;		/* a PolicyOverrideType, or NULL */
	const char *reason_comment;	/* or NULL */
	bool dkim_aligned, spf_aligned;	/* policy_evaluated dkim, spf */
	const char *spf_domain;		/* NULL: SPF not checked */
	enum ag_spf_identity spf_scope;
	enum ag_spf_result spf_result;
	size_t ndkim;			/* past AG_HISTORY_DKIM_MAX: cut */
	const struct ag_history_dkim *dkim;
};

struct ag_history;

/* A queue of at most MAX rows (0: AG_HISTORY_QUEUE_MAX). */
ag_status ag_history_new(size_t max, struct ag_history **out);
void ag_history_free(struct ag_history *h);	/* NULL is fine; drops rows */

/*
 * Queue a copy of ROW (strings cut to their RFC bounds).  Never waits
 * for I/O.  False when the row is dropped: the queue is full, or out of
 * memory (both counted in ag_history_dropped).
 */
bool ag_history_push(struct ag_history *h, const struct ag_history_row *row);

/* The same for a row of the message history (msglog.h), written to its
 * own table in the same batches. */
bool ag_history_push_msg(struct ag_history *h, const struct ag_msglog_row *row);

size_t ag_history_pending(struct ag_history *h);	/* rows queued */
uint64_t ag_history_dropped(struct ag_history *h);	/* since ag_history_new */

/*
 * Write the queued rows to S, AG_HISTORY_BATCH per transaction, in the
 * order they were queued.  A batch that fails stays queued for the next
 * call; the error is in S.  *NWRITTEN (may be NULL) counts rows written.
 */
ag_status ag_history_flush(struct ag_history *h, struct ag_store *s,
    size_t *nwritten);

/*
 * Delete the rows older than DAYS days before NOW (Unix seconds), DMARC
 * results and messages; DAYS 0 deletes every row (HistoryDays 0 keeps
 * none).  *NDELETED (may be NULL) counts both.
 */
ag_status ag_history_prune(struct ag_store *s, unsigned days, int64_t now,
    size_t *ndeleted);

/* What an aggregate report covers and who sends it. */
struct ag_history_report_opts {
	const char *domain;		/* the policy domain, normalized */
	int64_t begin, end;		/* rows with begin <= time < end */
	const char *org_name;		/* report_metadata */
	const char *email;
	const char *report_id;
};

/*
 * Write the RFC 7489 Appendix C aggregate report of O->domain for the
 * period to FP: the rows whose policy was found at the domain or whose
 * From domain is the domain, grouped into one record per identical
 * content with its count; policy_published from the most recent such
 * row that found a record (preferring a record at the domain itself).
 * date_range end is O->end - 1, the last second covered.  AG_NOTFOUND
 * when there are no rows (nothing is written); a corrupt row is
 * AG_PERMFAIL with the error in S.  *NRECORDS (may be NULL) gets the
 * number of record elements.
 */
ag_status ag_history_report(struct ag_store *s,
    const struct ag_history_report_opts *o, FILE *fp, size_t *nrecords);

/*
 * S as XML character data: & < > " ' as entities; control characters,
 * bytes that are not UTF-8, characters XML 1.0 does not allow and '\'
 * written as "\xNN" / "\\" (values come from the network).
 */
void ag_history_xml_put(FILE *fp, const char *s);

/*
 * A report boundary: Unix seconds, "YYYY-MM-DD" (UTC midnight) or
 * "YYYY-MM-DDTHH:MM:SSZ".  AG_INVALID for anything else.
 */
ag_status ag_history_parse_time(const char *s, int64_t *out);

#endif

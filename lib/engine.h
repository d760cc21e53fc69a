/*
 * engine.h - the daemon-wide state: the current config and policy
 * snapshot, swapped atomically and released by reference count, and the
 * watcher thread that reloads the policy when the database changes.
 *
 * A snapshot pairs one config with the policy read under it.  Sessions
 * pin a snapshot when a transaction starts (ag_engine_acquire) and let go
 * when it ends (ag_snapshot_release): a reload never changes the rules
 * under a transaction in flight.
 *
 * Database trouble never stops the daemon: when the policy cannot be
 * read, the snapshot keeps the last good policy (if any) and records the
 * error; with no policy at all, sessions answer with On-DatabaseError.
 * The watcher retries every PolicyCheckInterval seconds.
 *
 * The resolver and the SPF and DKIM checkers live as long as some
 * snapshot holds them: they are made again only when DNSServer,
 * DNSTimeout or AuthservID change on reload.
 *
 * The history queue (lib/history.h: messages and DMARC results) lives as long as the engine;
 * sessions push into it, and the watcher writes it to the database on
 * the store's own connection at every wake (and at ag_engine_free and
 * ag_engine_save), pruning rows past HistoryDays once an hour.
 *
 * Thread safety: every function may be called from any thread.
 */
#ifndef AG_ENGINE_H
#define AG_ENGINE_H

#include <stdbool.h>
#include <stdint.h>

#include "config.h"
#include "dkim.h"
#include "dkimsign.h"
#include "dmarc.h"
#include "dns.h"
#include "history.h"
#include "policy.h"
#include "rate.h"
#include "spf.h"
#include "status.h"

struct ag_snapshot {
	struct ag_config *cfg;		/* never NULL */
	struct ag_policy *policy;	/* NULL: database unavailable */
	bool policy_stale;		/* policy is the last good one, db failing */
	char dberr[256];		/* why the database failed, or "" */
	uint64_t generation;		/* increases with every swap */
	struct ag_dns *dns;		/* NULL: no resolver (see the log) */
	struct ag_spf *spf;		/* NULL: no resolver */
	struct ag_dkim *dkim;		/* NULL: no resolver */
	struct ag_dmarc *dmarc;		/* NULL: no resolver */
	struct ag_signtable *signtable;	/* read with the policy, or NULL */
	struct ag_signer *signer;	/* NULL: signing unavailable */
	struct ag_rater *rater;		/* the engine's, lives as long */
	struct ag_history *history;	/* the engine's, lives as long */
};

struct ag_engine;

/*
 * Create an engine for CFG (a reference is taken).  Opens (and creates,
 * with CREATE set) the database and loads the first policy; a database
 * failure is logged and kept in the snapshot, not returned: the daemon
 * must start and answer.  Returns AG_NOMEM only.
 */
ag_status ag_engine_new(struct ag_config *cfg, bool create,
    struct ag_engine **out);

/* Start the watcher thread (policy reload on database change). */
ag_status ag_engine_start(struct ag_engine *e);

/* Stop the watcher, save what is queued (when it was started) and free
 * everything; snapshots still held stay valid until released. NULL is
 * fine. */
void ag_engine_free(struct ag_engine *e);

/*
 * Replace the config (SIGHUP): the database is reopened if its path
 * changed, the policy re-read, and a new snapshot published.  CFG gets a
 * new reference.
 */
void ag_engine_reload(struct ag_engine *e, struct ag_config *cfg);

/* Re-read the policy now if the database changed (or FORCE). */
void ag_engine_refresh(struct ag_engine *e, bool force);

/* Pin the current snapshot; never NULL. */
const struct ag_snapshot *ag_engine_acquire(struct ag_engine *e);
void ag_snapshot_release(const struct ag_snapshot *s);	/* NULL is fine */

/* Save the rate counters and the history now (a stop that cannot
 * free the engine because messages are still in progress). */
void ag_engine_save(struct ag_engine *e);

/* Number of swaps so far (for tests and logs). */
uint64_t ag_engine_generation(struct ag_engine *e);

#endif

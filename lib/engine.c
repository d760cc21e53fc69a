/*
 * engine.c - the daemon-wide config/policy snapshot and the watcher that
 * keeps the policy in step with the database.
 *
 * The current snapshot is one pointer guarded by a mutex; readers take a
 * reference under the mutex (a few instructions) and never touch SQLite.
 * Only the watcher thread and ag_engine_reload/refresh use the store
 * handle, serialised by a second mutex, so the sqlite3 connection is
 * never used by two threads at once.  The watcher also writes the DMARC
 * results sessions queue (lib/history.h): sessions never touch SQLite.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine.h"
#include "log.h"
#include "metrics.h"
#include "signtable.h"
#include "store.h"

/* A policy shared by successive snapshots while the database fails. */
struct polref {
	struct ag_policy *policy;
	struct ag_signtable *sign;	/* read with the policy */
	unsigned refs;
};

/* The resolver and the checkers on it, shared while its settings last. */
struct checkers {
	unsigned refs;
	struct ag_dns *dns;
	struct ag_spf *spf;
	struct ag_dkim *dkim;
	struct ag_dmarc *dmarc;
	char *servers;		/* the settings they were made for */
	char *psl_file;
	unsigned timeout;
	char *receiver;
};

/* A published snapshot with its reference count. */
struct snap {
	struct ag_snapshot pub;	/* must be first: callers see only this */
	unsigned refs;
	struct polref *pol;	/* NULL: no policy */
	struct checkers *chk;	/* NULL: no resolver */
};

struct ag_engine {
	pthread_mutex_t cur_lock;	/* guards cur */
	struct snap *cur;

	pthread_mutex_t db_lock;	/* guards everything below */
	struct ag_config *cfg;		/* config the store was opened for */
	struct ag_store *store;		/* NULL while the database fails */
	bool create;
	bool opened;			/* the database was opened once */
	int64_t data_version;		/* last seen, -1 unknown */
	int64_t policy_version;		/* of the policy loaded, -1 unknown */
	bool db_failing;		/* to log a failure once, and recovery */
	uint64_t generation;
	struct checkers *chk;		/* for the next snapshot; may be NULL */

	struct ag_rater *rater;		/* rate counters: for the life of e */
	bool rate_restored;		/* the checkpoint was read back */
	char rate_owner[512];		/* who we are in rate_state */
	bool checkpoint_failing;	/* to log a failure once */
	struct timespec last_checkpoint; /* CLOCK_MONOTONIC */

	struct ag_history *history;	/* DMARC results: for the life of e */
	struct ag_signer *signer;	/* DKIM signing: for the life of e */
	bool history_failing;		/* to log a failure once */
	bool pruned;			/* the history was pruned once */
	struct timespec last_prune;	/* CLOCK_MONOTONIC */

	pthread_t watcher;
	bool watching;
	pthread_mutex_t stop_lock;
	pthread_cond_t stop_cond;
	bool stop;
};

/* Drop one reference to the checkers; free them at zero. */
static void
checkers_unref(struct checkers *k)
{
	if (k == NULL || __atomic_sub_fetch(&k->refs, 1, __ATOMIC_ACQ_REL) != 0) {
		return;
	}
	ag_dmarc_free(k->dmarc);
	ag_dkim_free(k->dkim);
	ag_spf_free(k->spf);
	ag_dns_free(k->dns);
	free(k->servers);
	free(k->receiver);
	free(k->psl_file);
	free(k);
}

/* Equal optional strings? */
static bool
same_str(const char *a, const char *b)
{
	return (a == NULL && b == NULL) ||
	    (a != NULL && b != NULL && strcmp(a, b) == 0);
}

/*
 * Make the checkers for CFG unless the current ones fit it.  Caller holds
 * db_lock.  On failure the old ones are kept, if any, and it is logged.
 */
static void
checkers_update(struct ag_engine *e, const struct ag_config *cfg)
{
	struct ag_dns_opts opts = { cfg->dns_servers, cfg->dns_timeout };
	struct checkers *k = e->chk;
	char err[256] = "";

	if (k != NULL && same_str(k->servers, cfg->dns_servers) &&
	    k->timeout == cfg->dns_timeout &&
	    same_str(k->receiver, cfg->authserv_id) &&
	    same_str(k->psl_file, cfg->psl_file)) {
		return;
	}
	k = calloc(1, sizeof(*k));
	if (k == NULL) {
		ag_log_err("out of memory making the resolver");
		return;
	}
	k->refs = 1;
	k->timeout = cfg->dns_timeout;
	if ((cfg->dns_servers != NULL &&
	    (k->servers = strdup(cfg->dns_servers)) == NULL) ||
	    (k->receiver = strdup(cfg->authserv_id)) == NULL ||
	    ag_dns_new(&opts, &k->dns, err, sizeof(err)) != AG_OK ||
	    ag_spf_new(k->dns, cfg->authserv_id, &k->spf, err,
	    sizeof(err)) != AG_OK ||
	    ag_dkim_new(k->dns, &k->dkim, err, sizeof(err)) != AG_OK ||
	    (cfg->psl_file != NULL &&
	    (k->psl_file = strdup(cfg->psl_file)) == NULL) ||
	    ag_dmarc_new(k->dns, cfg->psl_file, &k->dmarc, err,
	    sizeof(err)) != AG_OK) {
		ag_log_err("cannot make the resolver (%s): %s",
		    cfg->dns_servers != NULL ? cfg->dns_servers : "resolv.conf",
		    k->servers == NULL && cfg->dns_servers != NULL ?
		    "out of memory" : err);
		checkers_unref(k);
		return;
	}
	if (err[0] != '\0') {
		/* a warning: the built-in Public Suffix List stands in */
		ag_log_warning("%s", err);
	}
	checkers_unref(e->chk);
	e->chk = k;
}

/* Drop one reference to a shared policy. */
static void
polref_unref(struct polref *p)
{
	if (p == NULL) {
		return;
	}
	if (__atomic_sub_fetch(&p->refs, 1, __ATOMIC_ACQ_REL) != 0) {
		return;
	}
	ag_policy_free(p->policy);
	ag_signtable_free(p->sign);
	free(p);
}

/* Drop one reference; free the snapshot at zero. */
static void
snap_unref(struct snap *s)
{
	if (s == NULL) {
		return;
	}
	if (__atomic_sub_fetch(&s->refs, 1, __ATOMIC_ACQ_REL) != 0) {
		return;
	}
	polref_unref(s->pol);
	checkers_unref(s->chk);
	ag_config_unref(s->pub.cfg);
	free(s);
}

/*
 * Publish a snapshot of CFG and POL (the references passed in are taken
 * over).  Caller holds db_lock, so only one publisher runs at a time.
 */
static void
publish(struct ag_engine *e, struct ag_config *cfg, struct polref *pol,
    bool stale, const char *dberr)
{
	struct snap *s, *old;

	s = calloc(1, sizeof(*s));
	if (s == NULL) {
		/* keep the old snapshot: it is still consistent */
		ag_log_err("out of memory publishing a new policy snapshot");
		ag_config_unref(cfg);
		polref_unref(pol);
		return;
	}
	s->refs = 1;
	s->pol = pol;
	s->chk = e->chk;
	if (s->chk != NULL) {
		__atomic_add_fetch(&s->chk->refs, 1, __ATOMIC_ACQ_REL);
		s->pub.dns = s->chk->dns;
		s->pub.spf = s->chk->spf;
		s->pub.dkim = s->chk->dkim;
		s->pub.dmarc = s->chk->dmarc;
	}
	s->pub.cfg = cfg;
	s->pub.rater = e->rater;
	s->pub.history = e->history;
	s->pub.policy = pol != NULL ? pol->policy : NULL;
	s->pub.signtable = pol != NULL ? pol->sign : NULL;
	s->pub.signer = e->signer;
	s->pub.policy_stale = stale;
	snprintf(s->pub.dberr, sizeof(s->pub.dberr), "%s",
	    dberr != NULL ? dberr : "");
	s->pub.generation = ++e->generation;

	pthread_mutex_lock(&e->cur_lock);
	old = e->cur;
	e->cur = s;
	pthread_mutex_unlock(&e->cur_lock);
	snap_unref(old);
}

/* Wrap a freshly loaded policy for sharing. NULL on out of memory. */
static struct polref *
polref_new(struct ag_policy *policy, struct ag_signtable *sign)
{
	struct polref *p = calloc(1, sizeof(*p));

	if (p == NULL) {
		ag_policy_free(policy);
		ag_signtable_free(sign);
		return NULL;
	}
	p->policy = policy;
	p->sign = sign;
	p->refs = 1;
	return p;
}

/* Log the signing keys that could not be loaded (their file, never the
 * key), once per load. */
static void
sign_log(const struct ag_signtable *t)
{
	size_t i, bad = 0;

	for (i = 0; i < ag_signtable_count(t); i++) {
		const struct ag_sign_entry *k = ag_signtable_get(t, i);

		if (k->enabled && k->key == NULL) {
			ag_log_err("signing key %lld (d=%s s=%s): %s: mail it "
			    "signs gets On-SignError", (long long)k->id,
			    k->domain, k->selector, k->error);
			bad++;
		}
	}
	if (ag_signtable_count(t) > 0) {
		ag_log_info("signing table loaded: %zu keys, %zu unusable",
		    ag_signtable_count(t), bad);
	}
}

/*
 * The database failed with ERR: publish a snapshot that keeps the last
 * good policy (marked stale) under the current config, unless exactly
 * that is already published.  Caller holds db_lock (cur only changes
 * under it, so reading e->cur here is safe).
 */
static void
publish_failure(struct ag_engine *e, const char *err)
{
	struct snap *cur = e->cur;
	struct polref *keep = NULL;

	if (cur != NULL && cur->pub.cfg == e->cfg && cur->chk == e->chk &&
	    strcmp(cur->pub.dberr, err) == 0) {
		return;
	}
	if (cur != NULL && cur->pol != NULL) {
		keep = cur->pol;
		__atomic_add_fetch(&keep->refs, 1, __ATOMIC_ACQ_REL);
	}
	publish(e, ag_config_ref(e->cfg), keep, keep != NULL, err);
}

/* Log a database failure once per outage. Caller holds db_lock. */
static void
db_failed(struct ag_engine *e, const char *what)
{
	size_t len = strlen(e->cfg->database);
	/* the store's errors begin with the path already */
	bool named = strncmp(what, e->cfg->database, len) == 0 &&
	    what[len] == ':';

	if (!e->db_failing && named) {
		ag_log_err("database %s", what);
	} else if (!e->db_failing) {
		ag_log_err("database %s: %s", e->cfg->database, what);
	}
	e->db_failing = true;
}

/* Open the store if it is not open.  Caller holds db_lock. */
static ag_status
db_open(struct ag_engine *e, char *err, size_t errlen)
{
	ag_status st;
	/* only the first time: a database removed later is a fault, not a
	 * reason to start again with no rules */
	int flags = e->create && !e->opened ? AG_STORE_CREATE : 0;

	if (e->store != NULL) {
		return AG_OK;
	}
	st = ag_store_open(e->cfg->database, flags,
	    (int)e->cfg->database_timeout, &e->store);
	if (st != AG_OK) {
		snprintf(err, errlen, "%s",
		    e->store != NULL ? ag_store_errstr(e->store) : "out of memory");
		ag_store_close(e->store);
		e->store = NULL;
		return st;
	}
	e->opened = true;
	if (ag_store_is_readonly(e->store)) {
		ag_log_notice("database %s is read-only: rules are read, "
		    "nothing can be written to it", e->cfg->database);
	}
	e->data_version = -1;
	e->policy_version = -1;
	if (!e->rate_restored && e->rater != NULL) {
		e->rate_restored = true;
		(void)ag_rater_restore(e->rater, e->store, e->rate_owner);
	}
	return AG_OK;
}

/*
 * Save the local rate counters if the interval has passed (or FORCE).
 * Caller holds db_lock.  The store's own connection writes, so the
 * watcher does not see its own checkpoint as a rule change.
 */
static void
rate_checkpoint(struct ag_engine *e, bool force)
{
	struct timespec now;
	char err[8];

	clock_gettime(CLOCK_MONOTONIC, &now);
	if (!force && now.tv_sec - e->last_checkpoint.tv_sec <
	    (time_t)e->cfg->rate_checkpoint_interval) {
		return;
	}
	e->last_checkpoint = now;
	ag_rater_expire(e->rater);
	if (db_open(e, err, sizeof(err)) != AG_OK ||
	    ag_store_is_readonly(e->store)) {
		return;		/* the database trouble is logged elsewhere */
	}
	if (ag_rater_checkpoint(e->rater, e->store, e->rate_owner) != AG_OK) {
		if (!e->checkpoint_failing) {
			ag_log_err("rate counters are not being saved: a "
			    "restart will forget them");
		}
		e->checkpoint_failing = true;
	} else if (e->checkpoint_failing) {
		ag_log_notice("rate counters are saved again");
		e->checkpoint_failing = false;
	}
}

/*
 * Write the history rows (messages, DMARC results) queued by sessions
 * and, once an hour (and at the first call), delete those older than
 * HistoryDays.  Caller holds db_lock.  The store's own connection
 * writes, and neither table has a policy_version trigger, so these
 * writes never make a policy reload.
 */
static void
history_save(struct ag_engine *e)
{
	struct timespec now;
	char err[8];
	size_t n = 0;
	bool prune;

	clock_gettime(CLOCK_MONOTONIC, &now);
	prune = !e->pruned ||
	    now.tv_sec - e->last_prune.tv_sec >= AG_HISTORY_PRUNE_INTERVAL;
	if (ag_history_pending(e->history) == 0 && !prune) {
		return;
	}
	if (db_open(e, err, sizeof(err)) != AG_OK ||
	    ag_store_is_readonly(e->store)) {
		return;		/* logged elsewhere; the rows wait (bounded) */
	}
	if (ag_history_flush(e->history, e->store, &n) != AG_OK) {
		if (!e->history_failing) {
			ag_log_err("the history (messages, DMARC results) "
			    "is not being saved: %s", ag_store_errstr(e->store));
		}
		e->history_failing = true;
		return;
	}
	if (e->history_failing) {
		ag_log_notice("the history is saved again");
		e->history_failing = false;
	}
	if (!prune) {
		return;
	}
	e->pruned = true;
	e->last_prune = now;
	if (ag_history_prune(e->store, e->cfg->history_days,
	    (int64_t)time(NULL), &n) != AG_OK) {
		ag_log_warning("history not pruned: %s",
		    ag_store_errstr(e->store));
	} else if (n > 0) {
		ag_log_info("history: %zu rows older than %u days deleted",
		    n, e->cfg->history_days);
	}
}

/*
 * Re-read the policy if the database changed (or FORCE), and publish.
 * On failure keep the last good policy, marked stale.  Caller holds db_lock.
 */
static void
db_refresh(struct ag_engine *e, bool force)
{
	char err[256] = "";
	struct ag_policy *pol = NULL;
	struct ag_signtable *sign = NULL;
	int64_t dv = -1, pv = -1;
	ag_status st;

	if (e->store != NULL && ag_store_moved(e->store)) {
		/* the handle would go on reading and writing a file nobody
		 * sees: open what the path names now, or fail until it is back */
		ag_log_warning("database %s was removed or replaced: opening "
		    "it again", e->cfg->database);
		ag_store_close(e->store);
		e->store = NULL;
	}
	st = db_open(e, err, sizeof(err));
	if (st == AG_OK) {
		st = ag_store_data_version(e->store, &dv);
		if (st == AG_OK && !force && !e->db_failing &&
		    dv == e->data_version) {
			return;		/* nothing changed */
		}
		if (st == AG_OK) {
			st = ag_store_policy_version(e->store, &pv);
		}
		if (st == AG_OK && !force && !e->db_failing &&
		    pv == e->policy_version) {
			/* a write that is not a rule change (counters) */
			e->data_version = dv;
			return;
		}
		if (st == AG_OK) {
			st = ag_store_load_policy(e->store, &pol);
		}
		if (st == AG_OK) {
			st = ag_signtable_load(e->store, true, &sign);
		}
		if (st != AG_OK) {
			ag_policy_free(pol);
			pol = NULL;
			snprintf(err, sizeof(err), "%s", ag_store_errstr(e->store));
			/* reopen next time: the file may have been replaced */
			ag_store_close(e->store);
			e->store = NULL;
		}
	}
	if (st == AG_OK) {
		if (e->db_failing) {
			ag_log_notice("database %s: usable again, %zu rules",
			    e->cfg->database, ag_policy_count(pol));
		} else {
			ag_log_info("policy loaded: %zu rules",
			    ag_policy_count(pol));
		}
		e->db_failing = false;
		e->data_version = dv;
		e->policy_version = pv;
		sign_log(sign);
		ag_metrics_reload(AG_MET_RELOAD_POLICY);
		publish(e, ag_config_ref(e->cfg), polref_new(pol, sign), false,
		    NULL);
		return;
	}
	ag_metrics_reload_failed(AG_MET_RELOAD_POLICY);
	db_failed(e, err);
	publish_failure(e, err);
}

ag_status
ag_engine_new(struct ag_config *cfg, bool create, struct ag_engine **out)
{
	struct ag_engine *e;

	*out = NULL;
	e = calloc(1, sizeof(*e));
	if (e == NULL) {
		return AG_NOMEM;
	}
	pthread_mutex_init(&e->cur_lock, NULL);
	pthread_mutex_init(&e->db_lock, NULL);
	pthread_mutex_init(&e->stop_lock, NULL);
	pthread_cond_init(&e->stop_cond, NULL);
	e->cfg = ag_config_ref(cfg);
	e->create = create;
	e->data_version = -1;
	e->policy_version = -1;
	if (ag_signer_new(&e->signer, NULL, 0) != AG_OK) {
		/* logged: outbound mail then gets On-SignError */
		ag_log_err("cannot start the DKIM signing library");
		e->signer = NULL;
	}
	if (ag_rater_new(cfg->rate_max_keys, &e->rater) != AG_OK ||
	    ag_history_new(AG_HISTORY_QUEUE_MAX, &e->history) != AG_OK) {
		ag_engine_free(e);
		return AG_NOMEM;
	}
	ag_rater_configure(e->rater, cfg);
	ag_rater_owner(cfg, e->rate_owner, sizeof(e->rate_owner));
	clock_gettime(CLOCK_MONOTONIC, &e->last_checkpoint);

	pthread_mutex_lock(&e->db_lock);
	checkers_update(e, cfg);
	db_refresh(e, true);
	pthread_mutex_unlock(&e->db_lock);
	if (e->cur == NULL) {
		ag_engine_free(e);
		return AG_NOMEM;
	}
	*out = e;
	return AG_OK;
}

/* The watcher: check the database every PolicyCheckInterval seconds. */
static void *
watcher_main(void *arg)
{
	struct ag_engine *e = arg;
	struct timespec ts;
	unsigned interval;

	for (;;) {
		pthread_mutex_lock(&e->db_lock);
		interval = e->cfg->policy_check_interval;
		if (e->cfg->rate_checkpoint_interval < interval) {
			interval = e->cfg->rate_checkpoint_interval;
		}
		pthread_mutex_unlock(&e->db_lock);
		if (interval == 0) {
			interval = 1;
		}
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec += interval;

		pthread_mutex_lock(&e->stop_lock);
		while (!e->stop) {
			if (pthread_cond_timedwait(&e->stop_cond, &e->stop_lock,
			    &ts) == ETIMEDOUT) {
				break;
			}
		}
		if (e->stop) {
			pthread_mutex_unlock(&e->stop_lock);
			return NULL;
		}
		pthread_mutex_unlock(&e->stop_lock);

		pthread_mutex_lock(&e->db_lock);
		db_refresh(e, false);
		rate_checkpoint(e, false);
		history_save(e);
		pthread_mutex_unlock(&e->db_lock);
	}
}

ag_status
ag_engine_start(struct ag_engine *e)
{
	if (e->watching) {
		return AG_OK;
	}
	if (pthread_create(&e->watcher, NULL, watcher_main, e) != 0) {
		return AG_NOMEM;
	}
	e->watching = true;
	return AG_OK;
}

void
ag_engine_free(struct ag_engine *e)
{
	if (e == NULL) {
		return;
	}
	if (e->watching) {
		pthread_mutex_lock(&e->stop_lock);
		e->stop = true;
		pthread_cond_signal(&e->stop_cond);
		pthread_mutex_unlock(&e->stop_lock);
		pthread_join(e->watcher, NULL);
	}
	if (e->rater != NULL && e->watching) {
		/* the daemon stops: keep the counters for the next start */
		rate_checkpoint(e, true);
	}
	if (e->history != NULL && e->watching) {
		/* and the DMARC results not written yet (a tool like
		 * `authgatectl check` never starts the watcher: its
		 * simulated messages are not history) */
		history_save(e);
	}
	snap_unref(e->cur);
	checkers_unref(e->chk);
	ag_store_close(e->store);
	ag_rater_free(e->rater);
	ag_history_free(e->history);
	ag_signer_free(e->signer);
	ag_config_unref(e->cfg);
	pthread_mutex_destroy(&e->cur_lock);
	pthread_mutex_destroy(&e->db_lock);
	pthread_mutex_destroy(&e->stop_lock);
	pthread_cond_destroy(&e->stop_cond);
	free(e);
}

void
ag_engine_reload(struct ag_engine *e, struct ag_config *cfg)
{
	pthread_mutex_lock(&e->db_lock);
	if (strcmp(cfg->database, e->cfg->database) != 0 ||
	    cfg->database_timeout != e->cfg->database_timeout) {
		ag_store_close(e->store);
		e->store = NULL;
		e->db_failing = false;
		e->opened = false;	/* a new path is created as at start */
	}
	ag_config_unref(e->cfg);
	e->cfg = ag_config_ref(cfg);
	ag_metrics_reload(AG_MET_RELOAD_CONFIG);
	checkers_update(e, cfg);
	ag_rater_configure(e->rater, cfg);
	db_refresh(e, true);
	pthread_mutex_unlock(&e->db_lock);
}

void
ag_engine_refresh(struct ag_engine *e, bool force)
{
	pthread_mutex_lock(&e->db_lock);
	db_refresh(e, force);
	pthread_mutex_unlock(&e->db_lock);
}

const struct ag_snapshot *
ag_engine_acquire(struct ag_engine *e)
{
	struct snap *s;

	pthread_mutex_lock(&e->cur_lock);
	s = e->cur;
	__atomic_add_fetch(&s->refs, 1, __ATOMIC_ACQ_REL);
	pthread_mutex_unlock(&e->cur_lock);
	return &s->pub;
}

void
ag_snapshot_release(const struct ag_snapshot *pub)
{
	/* pub is the first member of struct snap */
	snap_unref((struct snap *)(void *)(uintptr_t)pub);
}

uint64_t
ag_engine_generation(struct ag_engine *e)
{
	uint64_t g;

	pthread_mutex_lock(&e->cur_lock);
	g = e->cur != NULL ? e->cur->pub.generation : 0;
	pthread_mutex_unlock(&e->cur_lock);
	return g;
}

void
ag_engine_save(struct ag_engine *e)
{
	pthread_mutex_lock(&e->db_lock);
	rate_checkpoint(e, true);
	history_save(e);
	pthread_mutex_unlock(&e->db_lock);
}

/*
 * metrics.h - process-wide counters for the Prometheus endpoint
 * (MetricsListen, filter/metrics_http.c) and their text rendering.
 *
 * Every hook is one relaxed atomic add on a fixed slot: no lock, no
 * allocation, bounded memory whatever the traffic (rule ids go into a
 * fixed table, see ag_metrics_rate_hit).  The counters live for the
 * process and only grow (a Prometheus counter must not go back), except
 * through ag_metrics_reset(), which is for tests.
 *
 * Thread safety: every function may be called from any thread at any
 * time; ag_metrics_reset() only while no hook runs.  A rendering is not
 * one atomic snapshot: series read a moment apart may disagree by the
 * events of that moment (a histogram's _count is the sum of its buckets,
 * so those two always agree).
 */
#ifndef AG_METRICS_H
#define AG_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/socket.h>

#include "status.h"

/* Distinct rule ids counted one by one; more go into rule="other". */
#define AG_METRICS_RULES_MAX 1024

/* What authgate_auth_results_total counts: method and identity. */
enum ag_metrics_auth {
	AG_MET_SPF_MFROM = 0,	/* result: enum ag_spf_result */
	AG_MET_SPF_HELO,	/* result: enum ag_spf_result */
	AG_MET_DKIM,		/* result: enum ag_dkim_res, one per signature */
	AG_MET_DMARC,		/* result: enum ag_dmarc_res */
	AG_MET_NAUTH
};

/* authgate_dns_errors_total{kind=...} */
enum ag_metrics_dns_err {
	AG_MET_DNS_TIMEOUT = 0,	/* no answer by the deadline */
	AG_MET_DNS_SERVFAIL,	/* SERVFAIL, REFUSED, the resolver failed */
	AG_MET_DNS_MALFORMED,	/* an answer over our bounds, a bad TXT */
	AG_MET_DNS_NOMEM,
	AG_MET_DNS_NERR
};

/* authgate_reloads_total{what=...} */
enum ag_metrics_reload {
	AG_MET_RELOAD_CONFIG = 0,	/* SIGHUP: the config file read again */
	AG_MET_RELOAD_POLICY,		/* the rules read from the database */
	AG_MET_NRELOAD
};

/* Note the start time and the version for build_info (the daemon, once,
 * before any thread that counts). VERSION is copied, cut to 64 bytes. */
void ag_metrics_init(const char *version);

/* Every counter and gauge back to 0 (tests; no hook may run meanwhile). */
void ag_metrics_reset(void);

/* A message ended with ACTION as its log line's action= field says it:
 * "accept", "reject", "tempfail", "discard", "quarantine", "abort".
 * Other names are not counted. */
void ag_metrics_message(const char *action);

/* One authentication result; RESULT out of range is not counted. */
void ag_metrics_auth(enum ag_metrics_auth what, unsigned result);

/* A rate limit of rule RULE_ID refused (dry-run and tag rules too). */
void ag_metrics_rate_hit(int64_t rule_id);

/* DNS: a query asked; one answered from our own table; an error; the
 * time a query that went to libunbound took, in microseconds. */
void ag_metrics_dns_query(void);
void ag_metrics_dns_cache_hit(void);
void ag_metrics_dns_error(enum ag_metrics_dns_err kind);
void ag_metrics_dns_duration(uint64_t us);

/* Microseconds on CLOCK_MONOTONIC, for durations. */
uint64_t ag_metrics_clock_us(void);

/* An SQLite call failed (lib/store.c). */
void ag_metrics_store_error(void);

/* A Redis call failed; LOCAL: the decision was counted locally instead. */
void ag_metrics_redis_error(bool local);

/* A new rate key admitted uncounted: the local table was full. */
void ag_metrics_rate_table_full(void);

/* MTA connections open: +1 at connect, -1 at close. */
void ag_metrics_connection(int delta);

/* Messages in progress, set by whoever renders (from
 * ag_session_in_flight(), which already keeps it). */
void ag_metrics_set_in_flight(unsigned n);

void ag_metrics_reload(enum ag_metrics_reload what);
/* A reload that failed (the running config or rules are kept). */
void ag_metrics_reload_failed(enum ag_metrics_reload what);

/*
 * Escape V for a label value of the text format: backslash, double quote
 * and line feed become \\, \" and \n; the rest is copied.  Cut to fit
 * DSTSZ - 1 bytes without splitting an escape.  Returns DST.
 */
char *ag_metrics_escape(char *dst, size_t dstsz, const char *v);

/*
 * Write every metric in the Prometheus text exposition format 0.0.4
 * (# HELP, # TYPE, one line per series) to FP.  Returns 0, or -1 when
 * writing failed or no memory.
 */
int ag_metrics_write(FILE *fp);

/* The same in a new buffer (free() it) of *LEN bytes; NULL: no memory. */
char *ag_metrics_text(size_t *len);

/*
 * Parse a MetricsListen value: "IPV4:PORT" or "[IPV6]:PORT", literal
 * addresses only, port 1..65535.  SS/SSLEN get the address (either may
 * be NULL for a check only).  AG_INVALID with a reason in ERR.
 */
ag_status ag_metrics_listen_parse(const char *spec,
    struct sockaddr_storage *ss, socklen_t *sslen, char *err, size_t errlen);

#endif

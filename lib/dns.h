/*
 * dns.h - the daemon's one resolver: libunbound with its TTL-honouring
 * cache, forwarders from the config (tests point it at a loopback port),
 * and a deadline on every query so that a slow or dead server becomes a
 * temporary error, never a hang.  Answers with a TTL are also kept in a
 * table of our own in front of libunbound (lib/dnscache.h), so a name
 * asked again does not travel to libunbound's thread and back.
 *
 * Queries run asynchronously inside libunbound; a dispatcher thread owned
 * by the resolver delivers the answers, and each caller waits for its own
 * answer until its deadline (then the query is cancelled).  All functions
 * are thread-safe once ag_dns_new has returned, except ag_dns_free.
 * ag_dns_new starts the dispatcher thread (libunbound starts its own at the
 * first query): make the resolver after forking into the background.
 */
#ifndef AG_DNS_H
#define AG_DNS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "status.h"

/* RR types used here (RFC 1035, 3596). */
#define AG_DNS_A 1
#define AG_DNS_PTR 12
#define AG_DNS_MX 15
#define AG_DNS_TXT 16
#define AG_DNS_AAAA 28

/* Bounds on an answer we accept: more records, or more TXT bytes, is an
 * error of the answer (AG_PERMFAIL), not a reason to allocate more. */
#define AG_DNS_MAX_RR 64
#define AG_DNS_TXT_MAX 8192	/* bytes of one TXT record, strings joined */

struct ag_dns_opts {
	/*
	 * Forwarders separated by spaces or commas, each "ADDR" or
	 * "ADDR@PORT" (e.g. "127.0.0.1@5353 ::1"); NULL or "" means the
	 * system's /etc/resolv.conf.
	 */
	const char *servers;
	unsigned timeout_ms;	/* per query; 0 means 5000 */
};

struct ag_dns;

/* One answer record: its RDATA in wire format (TXT: length-prefixed strings). */
struct ag_dns_rr {
	const uint8_t *data;
	size_t len;
};

/* One allocation: rr[], the records' data and packet all live inside it. */
struct ag_dns_result {
	int rcode;		/* DNS RCODE of the reply */
	bool nxdomain;
	size_t n;		/* answer records of the asked type */
	struct ag_dns_rr *rr;
	const uint8_t *packet;	/* the whole reply in wire format */
	size_t packet_len;
	unsigned ttl;
};

/*
 * Make a resolver.  Errors (bad forwarder syntax, libunbound failure) give
 * AG_INVALID or AG_PERMFAIL (AG_NOMEM) with a message in ERR.
 */
ag_status ag_dns_new(const struct ag_dns_opts *opts, struct ag_dns **out,
    char *err, size_t errlen);
/*
 * Stop the dispatcher and libunbound and free D (NULL is fine).  No query
 * may be in progress: stop the threads that query first.  Answers still
 * due for queries that timed out are dropped.
 */
void ag_dns_free(struct ag_dns *d);

/*
 * Serve RR from local data instead of the network, as unbound's
 * local-data does: "name. TTL IN TXT \"v=spf1 -all\"".  With
 * ag_dns_add_local_zone(d, "example.", "static") names under the zone
 * without local data are NXDOMAIN.  For tests and the offline mode.  Both
 * also work after queries have been made (checked with libunbound 1.17:
 * the local zones have their own lock and are consulted before the cache),
 * and take effect for the queries that start afterwards.  AG_INVALID when
 * libunbound refuses the text (it reports bad syntax of local data as
 * out of memory, so both give AG_INVALID).
 */
ag_status ag_dns_add_local(struct ag_dns *d, const char *rr);
ag_status ag_dns_add_local_zone(struct ag_dns *d, const char *zone,
    const char *type);

/* Milliseconds on CLOCK_MONOTONIC: deadlines are expressed in it. */
uint64_t ag_dns_now_ms(void);

/*
 * Look up NAME (presentation form, trailing dot optional) of TYPE, giving
 * up at DEADLINE_MS (from ag_dns_now_ms(); the per-query timeout applies
 * too, whichever is sooner; 0 means the timeout alone).  NAME is taken
 * literally: no backslash escapes, no spaces or control characters, at
 * most 253 characters and labels of at most 63 (RFC 1035 2.3.4).
 *   AG_OK        answers in *OUT (n >= 1)
 *   AG_NOTFOUND  NXDOMAIN or no record of that type (*OUT still set, to
 *                tell the two apart; a "void lookup" in RFC 7208 terms)
 *   AG_TEMPFAIL  timeout, SERVFAIL, REFUSED, network trouble (*OUT NULL)
 *   AG_PERMFAIL  an answer over the bounds above, or a malformed TXT
 *                record (*OUT NULL)
 *   AG_INVALID   NAME is not a usable domain name, TYPE not in 1..65535
 *   AG_NOMEM
 * The result must be freed with ag_dns_result_free.
 */
ag_status ag_dns_query(struct ag_dns *d, const char *name, int type,
    uint64_t deadline_ms, struct ag_dns_result **out);
void ag_dns_result_free(struct ag_dns_result *r);	/* NULL is fine */

/*
 * Join the character-strings of one TXT RDATA into OUT (NUL-terminated;
 * *LEN gets the length, which may be less than strlen if the data holds
 * a NUL byte).  AG_PERMFAIL when malformed or longer than OUTSZ-1;
 * AG_INVALID for a NULL RR or OUT, or OUTSZ 0.
 */
ag_status ag_dns_txt_join(const struct ag_dns_rr *rr, char *out,
    size_t outsz, size_t *len);

/*
 * Counters for logs and metrics: queries asked (valid names), queries
 * given up at their deadline, and other TEMPFAIL, PERMFAIL and NOMEM
 * answers; of the queries, those answered from the resolver's own table
 * of answers (lib/dnscache.c, in front of libunbound's cache).
 */
struct ag_dns_stats {
	uint64_t queries, timeouts, failures, cached;
};
void ag_dns_stats(struct ag_dns *d, struct ag_dns_stats *out);

#ifdef AG_FUZZING
/*
 * Fuzz builds only (configure --enable-fuzz, tests/fuzz): when set, every
 * ag_dns_query with a valid name is answered by this function in place of
 * libunbound.  It returns a libunbound error code (0: *OUT holds an answer
 * allocated as libunbound allocates one, which ub_resolve_free frees), and
 * the answer then takes the same path as one from the network.  Set it
 * before the first query.
 */
struct ub_result;
extern int (*ag_dns_fuzz_answer)(const char *name, int type,
    struct ub_result **out);
#endif

#endif

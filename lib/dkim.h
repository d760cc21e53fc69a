/*
 * dkim.h - DKIM verification (RFC 6376, RFC 8301, RFC 8463) over
 * libopendkim, streamed with the SMTP phases: headers, end of headers,
 * body chunks, end of message.  The body is hashed as it arrives, never
 * held.  Key records are fetched through lib/dns.c under the message's
 * deadline (libopendkim's DNS hooks are ours, including its init/close
 * hooks, so dkim_close() never mistakes our handle for a libresolv one).
 *
 * Every signature up to a cap is evaluated and reported; signatures past
 * the cap are reported as not evaluated.  RSA keys under 1024 bits and
 * SHA-1 do not pass (RFC 8301); Ed25519-SHA256 is supported (RFC 8463).
 *
 * Thread safety: one struct ag_dkim serves every thread; a message
 * handle is used by one thread at a time.
 */
#ifndef AG_DKIM_H
#define AG_DKIM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dns.h"
#include "status.h"

#define AG_DKIM_MAX_SIGS_DEFAULT 5
#define AG_DKIM_MIN_RSA_BITS 1024	/* RFC 8301 3.2 */

/* Results as RFC 8601 2.7.1 names them. */
enum ag_dkim_res {
	AG_DKIM_NONE = 0,	/* the message is not signed */
	AG_DKIM_PASS,
	AG_DKIM_FAIL,		/* signature or body hash does not verify */
	AG_DKIM_NEUTRAL,	/* e.g. not evaluated (past the cap) */
	AG_DKIM_POLICY,		/* verifies, but not acceptable (weak key, sha1) */
	AG_DKIM_TEMPERROR,	/* key lookup failed temporarily */
	AG_DKIM_PERMERROR,	/* malformed signature or key, no key */
	AG_DKIM_NRESULTS
};

const char *ag_dkim_res_name(enum ag_dkim_res r);	/* "pass", ... */

/*
 * Public keys decoded for verification are kept and shared between
 * messages (lib/dkimpkey.c); how often one was found there, and not.
 */
void ag_dkim_pkey_stats(unsigned long *hits, unsigned long *misses);

/* One signature's outcome; every text is printable ASCII, bounded. */
struct ag_dkim_result {
	enum ag_dkim_res result;
	bool evaluated;		/* false: past the cap or the budget */
	char domain[256];	/* d= */
	char identity[256];	/* i= (or "@" d= when absent) */
	char selector[64];	/* s= */
	char algorithm[32];	/* a=: "rsa-sha256", "ed25519-sha256" */
	char b[16];		/* the first 8 characters of b= */
	unsigned key_bits;	/* 0 when unknown */
	char reason[128];	/* why not pass ("body hash mismatch", ...) */
};

struct ag_dkim;
struct ag_dkim_msg;

/* The verifier over DNS (not owned; must outlive it). */
ag_status ag_dkim_new(struct ag_dns *dns, struct ag_dkim **out, char *err,
    size_t errlen);
void ag_dkim_free(struct ag_dkim *k);	/* NULL is fine */

/*
 * Start verifying one message.  MAX_SIGS caps the signatures evaluated
 * (0: AG_DKIM_MAX_SIGS_DEFAULT); DEADLINE_MS (ag_dns_now_ms() clock)
 * bounds all key lookups: past it, results are temperror.  ID names the
 * message in libopendkim's own messages.  NULL on out of memory.
 */
struct ag_dkim_msg *ag_dkim_msg_new(struct ag_dkim *k, const char *id,
    unsigned max_sigs, uint64_t deadline_ms);
void ag_dkim_msg_free(struct ag_dkim_msg *m);	/* NULL is fine */

/*
 * Feed the message as the milter sees it: each header field (NAME, and
 * VALUE exactly as it follows the colon: leading whitespace and folding
 * kept, see ag_conn_set_leadspc()), the end of headers, body
 * chunks with CRLF line ends, and the end.  Bad input (a malformed header,
 * a signature the library refuses) never fails these calls: it shows in
 * the results.  AG_NOMEM only.
 */
ag_status ag_dkim_header(struct ag_dkim_msg *m, const char *name,
    const char *value);
ag_status ag_dkim_eoh(struct ag_dkim_msg *m);
ag_status ag_dkim_body(struct ag_dkim_msg *m, const unsigned char *buf,
    size_t len);
ag_status ag_dkim_eom(struct ag_dkim_msg *m);

/*
 * "NAME:VALUE" in *BUF (grown as needed, *CAP its size), VALUE as it
 * follows the colon, bare LF made CRLF: a header field as libopendkim
 * takes it, for verifying and for signing.  *OUTLEN gets the length.
 * AG_INVALID when NAME or VALUE is over 1 MB; AG_NOMEM.
 */
ag_status ag_dkim_field(char **buf, size_t *cap, const char *name,
    const char *value, size_t *outlen);

/* After ag_dkim_eom: the signatures' results, in header order. */
size_t ag_dkim_count(const struct ag_dkim_msg *m);
const struct ag_dkim_result *ag_dkim_get(const struct ag_dkim_msg *m,
    size_t i);

#endif

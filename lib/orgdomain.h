/*
 * orgdomain.h - organizational domains (RFC 7489 3.2) and identifier
 * alignment (RFC 7489 3.1) from the Public Suffix List.
 *
 * The list is read with libpsl, not with libopendmarc's own code:
 * libpsl is small, maintained, and used by curl, wget and libsoup; it
 * reads Debian's publicsuffix package (the compact .dafsa or the .dat
 * text) and has a built-in copy to fall back on; its lookups only read
 * the loaded list.  OpenDMARC has a CVE history (CVE-2020-12460, a heap
 * overflow in libopendmarc itself; CVE-2020-12272 and CVE-2021-34555 in
 * its milter), keeps its list and settings in process-wide statics set
 * by a non-thread-safe init, and would be a second dependency for a job
 * of a few lines.
 *
 * Both sections of the list count, ICANN and private: foo.github.io is
 * its own organizational domain, not github.io.  That is what the list
 * is for (names under github.io belong to different people), what
 * OpenDMARC does (it reads every rule of the file) and the safe reading
 * of relaxed alignment: with the private rules ignored, mail From:
 * victim.github.io would align with a DKIM signature of
 * attacker.github.io.
 *
 * Ownership: ag_psl_open() allocates the handle; ag_psl_free() frees it
 * (NULL is fine).  OUT buffers are the caller's.
 * Thread-safe: after ag_psl_open() returns, any number of threads may
 * look up in one handle at once; open and free are not concurrent with
 * lookups.
 */
#ifndef AG_ORGDOMAIN_H
#define AG_ORGDOMAIN_H

#include <stdbool.h>
#include <stddef.h>

#include "status.h"

/* Debian's publicsuffix package: the compiled list, then the text. */
#define AG_PSL_DEFAULT_DAFSA "/usr/share/publicsuffix/public_suffix_list.dafsa"
#define AG_PSL_DEFAULT_DAT "/usr/share/publicsuffix/public_suffix_list.dat"

struct ag_psl;

/*
 * Load the list from FILE (.dafsa or .dat, as libpsl reads them), or,
 * with FILE NULL, from AG_PSL_DEFAULT_DAFSA, then AG_PSL_DEFAULT_DAT,
 * then libpsl's built-in copy.  A named FILE that cannot be read or is
 * not a list (it must make co.uk a public suffix, as every real list
 * does) is AG_PERMFAIL with the reason in ERR; there is no fallback.
 * With FILE NULL, falling back to the .dat or to the built-in list (as
 * old as the libpsl build) is AG_OK with a warning in ERR to log;
 * otherwise ERR is "" on AG_OK.
 * AG_NOMEM if the handle cannot be allocated.  *OUT is NULL on failure.
 */
ag_status ag_psl_open(const char *file, struct ag_psl **out, char *err,
    size_t errlen);

/* Free the handle; NULL is fine. */
void ag_psl_free(struct ag_psl *p);

/* Where the list came from: a path or "built-in" (for the start-up log). */
const char *ag_psl_source(const struct ag_psl *p);

/*
 * The organizational domain of DOMAIN (RFC 7489 3.2) into OUT: DOMAIN is
 * normalized (ag_domain_normalize: lower case, no trailing dot), the
 * longest public suffix of it is found (the list's implicit "*" rule
 * makes the top label one if nothing longer matches), and one more label
 * is put in front.  When DOMAIN is itself a public suffix (com, co.uk,
 * github.io, a single label such as localhost) there is no label to add
 * and DOMAIN is the result.  False, with OUT "", if DOMAIN is not a
 * domain (empty, over 253 octets, bad characters or labels, an all-digit
 * top label such as an IP address) or the result does not fit OUTSZ.
 * Labels are compared as given: pass A-labels (xn--...); U-labels match
 * only the list's own lower-case UTF-8 spelling.
 */
bool ag_org_domain(const struct ag_psl *p, const char *domain, char *out,
    size_t outsz);

/*
 * Identifier alignment (RFC 7489 3.1.1, 3.1.2) of A and B (the From:
 * domain and the DKIM d= or SPF domain, in either order): strict needs
 * the same normalized name, relaxed the same organizational domain.
 * False if either is not a domain.
 */
bool ag_dmarc_aligned(const struct ag_psl *p, const char *a, const char *b,
    bool strict);

#endif

/*
 * spfrecord.h - a strict RFC 7208 check of an SPF record, run on every
 * record our DNS layer hands to libspf2.
 *
 * libspf2 is unmaintained, lax about syntax (it reports many syntax errors
 * as "invalid" instead of permerror) and has memory-safety bugs in macro
 * expansion (CVE-2021-20314, CVE-2021-33912, CVE-2021-33913,
 * CVE-2023-42118).  A record that fails this check never reaches it: the
 * evaluation ends in permerror, with the reason.  Pure functions, no
 * allocation, thread-safe.
 */
#ifndef AG_SPFRECORD_H
#define AG_SPFRECORD_H

#include <stdbool.h>
#include <stddef.h>

#include "status.h"

/* RFC 7208 limits. */
#define AG_SPF_MAX_DNS_TERMS 10	/* 4.6.4: terms that cause DNS queries */
#define AG_SPF_MAX_VOID 2	/* 4.6.4: lookups that return no data */
#define AG_SPF_MAX_MX_NAMES 10	/* 4.6.4: MX names looked up per mx term */
#define AG_SPF_MAX_PTR_NAMES 10	/* 4.6.4: PTR names checked per ptr term */
#define AG_SPF_RECORD_MAX 4096	/* our bound on one record's length */

/* Is this TXT string an SPF record: "v=spf1" then space or end (4.5)? */
bool ag_spf_record_is_spf(const char *txt, size_t len);

/* What a valid record contains (for the caller's limits and logs). */
struct ag_spf_record_info {
	unsigned dns_terms;	/* include, a, mx, ptr, exists, redirect */
	bool has_redirect;
	bool has_exp;
	bool has_all;
	bool has_ptr;
	bool has_macros;
};

/*
 * Check REC (LEN bytes; it may hold NUL bytes, which are invalid) against
 * the ABNF of RFC 7208 section 12 and the rules of sections 4.6, 5, 6 and
 * 7: known mechanisms and their arguments, CIDR lengths (ip4 0..32, ip6
 * 0..128, no leading zeros), IP literals, domain-spec syntax (macro
 * expansions, and a top label that is not all digits), modifier names,
 * at most one redirect= and one exp=, macro-string syntax (only the
 * letters of 7.2, transformers of at most 3 digits, valid delimiters, "%%",
 * "%_", "%-"), printable ASCII only.  On top of the RFC, records whose
 * macros could reach the known libspf2 bugs are refused (see spfrecord.c
 * for the exact rule), as is anything longer than AG_SPF_RECORD_MAX.
 *
 * Returns AG_OK (INFO filled, if not NULL), or AG_INVALID with a short
 * reason in WHY ("ip4: prefix length 33 out of range").  WHY never holds
 * bytes of REC other than printable ASCII, and is bounded by WHYLEN.
 */
ag_status ag_spf_record_check(const char *rec, size_t len,
    struct ag_spf_record_info *info, char *why, size_t whylen);

/*
 * Check a macro-string used as explanation text (exp= TXT record, 6.2):
 * the same macro rules, any printable ASCII and spaces otherwise.
 */
ag_status ag_spf_explanation_check(const char *txt, size_t len, char *why,
    size_t whylen);

#endif

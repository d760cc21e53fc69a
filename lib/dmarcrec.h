/*
 * dmarcrec.h - the DMARC policy record (RFC 7489 6.3, 6.4, 6.6.3; the np
 * tag of RFC 9091): parse one TXT record, and pick the one record of a
 * _dmarc.DOMAIN answer.
 *
 * The record comes from DNS, so the parser is strict and bounded: no
 * allocation, a length cap, printable ASCII only.  Which results a
 * mistake in a record gives (whole record unusable, tag ignored, or p=none
 * because of rua) is written down per case in dmarcrec.c.
 *
 * Ownership: OUT and ERR are the caller's; nothing is kept.
 * Thread-safe: no state.
 */
#ifndef AG_DMARCREC_H
#define AG_DMARCREC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Our bound on one record (all strings joined); longer is INVALID. */
#define AG_DMARC_RECORD_MAX 2048
/* mailto: URIs kept per rua= / ruf= tag; more are counted, not kept. */
#define AG_DMARC_RUA_MAX 8
#define AG_DMARC_RUF_MAX 8
/* Room for one URI (without its "!size"), NUL included. */
#define AG_DMARC_URI_SIZE 256
/* RFC 7489 6.3: defaults of pct= and ri=. */
#define AG_DMARC_PCT_DEFAULT 100
#define AG_DMARC_RI_DEFAULT 86400

/* RFC 7489 6.3 p=, sp=; RFC 9091 np=. */
enum ag_dmarc_policy {
	AG_DMARC_P_NONE = 0,
	AG_DMARC_P_QUARANTINE,
	AG_DMARC_P_REJECT
};

/* RFC 7489 6.3 fo= options, as bits. */
#define AG_DMARC_FO_0 0x1	/* report if all mechanisms fail (default) */
#define AG_DMARC_FO_1 0x2	/* report if any mechanism fails */
#define AG_DMARC_FO_D 0x4	/* DKIM failure reports */
#define AG_DMARC_FO_S 0x8	/* SPF failure reports */

/* One parsed record.  Defaults (RFC 7489 6.3) apply to absent tags. */
struct ag_dmarc_record {
	enum ag_dmarc_policy p;
	bool has_sp;
	enum ag_dmarc_policy sp;	/* subdomains; p when !has_sp */
	bool has_np;
	enum ag_dmarc_policy np;	/* non-existent subdomains (RFC 9091
					   4.1): sp when !has_np */
	unsigned pct;			/* 0..100, default 100 */
	bool adkim_strict;		/* default relaxed */
	bool aspf_strict;		/* default relaxed */
	uint32_t ri;			/* seconds, default 86400 */
	unsigned fo;			/* AG_DMARC_FO_* bits, default FO_0 */
	/*
	 * rua= and ruf=: the mailto: URIs, as written but without the
	 * "!size" suffix, with that size in bytes (0: none given; sizes
	 * past UINT64_MAX saturate).  Valid URIs of other schemes, and
	 * mailto: URIs past the array or too long for it, are counted in
	 * *_skipped; invalid ones in *_bad.
	 */
	size_t nrua;
	char rua[AG_DMARC_RUA_MAX][AG_DMARC_URI_SIZE];
	uint64_t rua_size[AG_DMARC_RUA_MAX];
	unsigned rua_skipped, rua_bad;
	size_t nruf;
	char ruf[AG_DMARC_RUF_MAX][AG_DMARC_URI_SIZE];
	uint64_t ruf_size[AG_DMARC_RUF_MAX];
	unsigned ruf_skipped, ruf_bad;
	/*
	 * p was missing or invalid, or sp invalid, and the record is read
	 * as "p=none" because rua= holds a valid URI (RFC 7489 6.6.3 step
	 * 6): p, sp and np are none, has_sp and has_np false, pct 100; the
	 * other tags (adkim, aspf, rua, ruf, ri, fo) are kept.
	 */
	bool p_from_rua;
	/* Tags with a bad value that were ignored (their default applies). */
	unsigned ignored;
};

enum ag_dmarc_rec_status {
	AG_DMARC_REC_OK,	/* a usable record in OUT */
	AG_DMARC_REC_NONE,	/* not DMARC, or several records: no policy */
	AG_DMARC_REC_INVALID	/* a DMARC1 record, but unusable: no policy */
};

/* Is this TXT record (LEN bytes) a DMARC record: first tag v=DMARC1? */
bool ag_dmarc_record_is_dmarc(const char *txt, size_t len);

/*
 * Parse one TXT record TXT (its strings already joined without a
 * separator, LEN bytes; NUL bytes are invalid, no terminator needed).
 * Returns AG_DMARC_REC_NONE when the first tag is not v=DMARC1,
 * AG_DMARC_REC_INVALID when it is but the record cannot be used (syntax,
 * duplicate tag, no valid p and no valid rua URI, length, bad bytes), or
 * AG_DMARC_REC_OK with OUT filled.  OUT holds the defaults unless OK;
 * it may be NULL (a check only).  ERR gets the reason, or on OK the
 * p=none reading of p_from_rua, else a note on the first tag ignored or
 * URI skipped, else ""; it only ever holds printable ASCII, is bounded
 * by ERRLEN, and may be NULL.
 */
enum ag_dmarc_rec_status ag_dmarc_record_parse(const char *txt, size_t len,
    struct ag_dmarc_record *out, char *err, size_t errlen);

/*
 * Policy discovery at one name (RFC 7489 6.6.3 steps 3-5): of the N TXT
 * records TXTS (LENS[i] bytes each; LENS NULL: NUL-terminated strings)
 * found at _dmarc.DOMAIN, those whose first tag is v=DMARC1 count.  None
 * gives AG_DMARC_REC_NONE; more than one gives AG_DMARC_REC_NONE with
 * ERR saying how many; exactly one gives its ag_dmarc_record_parse().
 */
enum ag_dmarc_rec_status ag_dmarc_record_pick(const char *const *txts,
    const size_t *lens, size_t n, struct ag_dmarc_record *out, char *err,
    size_t errlen);

/* "none", "quarantine", "reject" (for logs and Authentication-Results). */
const char *ag_dmarc_policy_name(enum ag_dmarc_policy p);

/* "ok", "none", "invalid". */
const char *ag_dmarc_rec_status_name(enum ag_dmarc_rec_status st);

#endif

/*
 * authres.h - composing the Authentication-Results header (RFC 8601) and
 * the Received-SPF header (RFC 7208 section 9.1).
 *
 * Every value that comes from the network is written so that the header
 * always parses: as a token when it is one, else as a quoted-string with
 * '"' and '\' escaped; control characters and 8-bit bytes never appear raw;
 * reason comments escape '(' ')' '\'.  Long headers are folded between
 * results and properties.
 *
 * In detail, a value is first made safe: each byte outside printable
 * ASCII (0x20-0x7e: controls, TAB, DEL, 8-bit and UTF-8) becomes the four
 * characters "\xHH" (lower-case hex), and the safe form is cut at
 * AG_AUTHRES_VALUE_MAX bytes (never inside a "\xHH"), "..." marking the cut.
 * The safe form is then written bare when the grammar allows (an RFC 2045
 * token; for a property also local-part@domain-name with a dot-atom or
 * empty local part, RFC 8601 2.2; for Received-SPF an RFC 5322 dot-atom),
 * else as a quoted-string, so "\x0d" appears as "\\x0d" in the header.
 * The output is always 7-bit ASCII.
 *
 * Thread safety: a builder is used by one thread; no shared state.
 */
#ifndef AG_AUTHRES_H
#define AG_AUTHRES_H

#include <stddef.h>

#include "status.h"

/* RFC 5322 2.1.1: lines stay under 78 characters where they can. */
#define AG_HEADER_FOLD_AT 78

/* The line break used inside header values handed to the MTA. */
#define AG_HEADER_FOLD "\n\t"

/* Bytes kept of the safe form of one value, reason or comment. */
#define AG_AUTHRES_VALUE_MAX 256
/* Longest method, result, ptype or property (RFC 8601 Keyword). */
#define AG_AUTHRES_KEYWORD_MAX 64
/* Results in one header, properties in one result. */
#define AG_AUTHRES_MAX_RESULTS 32
#define AG_AUTHRES_MAX_PROPS 8
/* A rendered Authentication-Results value never exceeds this. */
#define AG_AUTHRES_HEADER_MAX 16384

struct ag_authres;

/* A property of a result: "smtp.mailfrom=user@example.com". */
struct ag_authres_prop {
	const char *ptype;	/* "smtp", "header", "policy" */
	const char *property;	/* "mailfrom", "helo", "d", "b" ... */
	const char *value;	/* from the network: quoted as needed */
};

/*
 * A builder for one header; AUTHSERV_ID is copied (written as a token, or
 * quoted if it is not one).  NULL: no memory, or AUTHSERV_ID is NULL.
 */
struct ag_authres *ag_authres_new(const char *authserv_id);
void ag_authres_free(struct ag_authres *ar);	/* NULL is fine */

/*
 * Add one method result: METHOD "spf", RESULT "pass", an optional REASON
 * (rendered as reason="..."; may be NULL; "" is the same as NULL), and
 * NPROPS properties.  All strings are copied.  METHOD, RESULT, each ptype
 * and property must be RFC 8601 Keywords (letters, digits, inner '-') of
 * at most AG_AUTHRES_KEYWORD_MAX bytes, and each value non-NULL; else, or
 * past AG_AUTHRES_MAX_RESULTS, AG_AUTHRES_MAX_PROPS or
 * AG_AUTHRES_HEADER_MAX, AG_INVALID.  AG_NOMEM: no memory.  On any error
 * the builder is unchanged.
 */
ag_status ag_authres_add(struct ag_authres *ar, const char *method,
    const char *result, const char *reason,
    const struct ag_authres_prop *props, size_t nprops);

/*
 * The header value (without "Authentication-Results:"), folded with
 * AG_HEADER_FOLD so that no line is longer than AG_HEADER_FOLD_AT where a
 * fold point exists (before a method or a property, never inside a value;
 * a method folds with its first property rather than end a line alone);
 * with no results it is "AUTHSERV-ID; none".  Returns
 * a string the caller frees, or NULL on no memory.
 */
char *ag_authres_render(const struct ag_authres *ar);

/* The fields of a Received-SPF header. */
struct ag_received_spf {
	const char *result;		/* "pass", "fail", ... */
	const char *comment;		/* free text, escaped; may be NULL */
	const char *client_ip;		/* client-ip= */
	const char *envelope_from;	/* envelope-from= (may be "") */
	const char *helo;		/* helo= */
	const char *receiver;		/* receiver= (our host name) */
	const char *identity;		/* "mailfrom" or "helo" */
	const char *mechanism;		/* mechanism= that matched; may be NULL */
	const char *problem;		/* problem= for errors; may be NULL */
};

/*
 * The Received-SPF header value, folded as above (also inside the comment,
 * between its words); caller frees.  Keys come in the order of the struct,
 * NULL fields left out; a NULL or "" comment is left out.  NULL: no
 * memory, or R is NULL or its result is not an RFC 7208 2.6 result.
 */
char *ag_received_spf_render(const struct ag_received_spf *r);

/*
 * The authserv-id of an incoming Authentication-Results header VALUE (RFC
 * 8601 2.2: the first "value" after optional CFWS, a token or a
 * quoted-string, unquoted here), for recognising headers that claim to be
 * ours.  Comments may nest; work is bounded by the length of VALUE and
 * never recursive.  AG_OK with the id in OUT (cut to OUTSZ-1, which is
 * then AG_INVALID: an id that long is not ours), or AG_INVALID when no
 * id can be read.
 */
ag_status ag_authres_parse_id(const char *value, char *out, size_t outsz);

#endif

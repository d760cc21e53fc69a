/*
 * spfrecord.c - a strict RFC 7208 check of SPF records and explanation
 * strings, run before libspf2 sees them, plus one safety rule against the
 * known memory-safety bugs in libspf2's macro handling.
 *
 * The syntax is that of RFC 7208 section 12 with the rules of sections
 * 4.5, 4.6, 5, 6 and 7, no stricter: a valid record refused here is a
 * false permerror for real mail.  Where the RFC 7208 test suite allows
 * either answer (an empty label or a 64-octet label in a domain-spec, 4.3
 * and 4.8), the ABNF decides and the record passes.  Choices the RFC
 * leaves to the reader:
 *  - a term that starts like a modifier name and has "=" right after the
 *    name is a modifier (4.6.1); "redirect" and "exp" are never unknown
 *    modifiers, so "redirect=-all" is a bad redirect, not an unknown one;
 *  - the letters c, r and t are refused outside explanation text (7.2),
 *    in unknown modifiers too, as pyspf does;
 *  - a CIDR length has no leading zero, like the ABNF of ip4-cidr-length.
 *
 * Ownership: nothing is allocated; WHY is the caller's buffer.
 * Thread-safe: no state.
 *
 * THE SAFETY RULE
 *
 * libspf2 1.2.10 (unmaintained; Debian 12 ships it as 1.2.10-7.2) has had
 * these bugs in the code that compiles and expands macro-strings:
 *
 *  - CVE-2021-20314: SPF_c_parse_macro() (spf_compile.c) gives a string
 *    literal the whole remaining space of its 511-byte data area
 *    (SPF_MAX_MECH_LEN / SPF_MAX_MOD_LEN) without counting the 4-byte item
 *    header, so a literal that fills the area writes 4 bytes past it.  The
 *    explanation buffer of SPF_record_compile_macro() is exactly that
 *    size, on the stack.  Fixed in Debian 1.2.10-7.1.
 *  - CVE-2023-42118: the fix above computes the space as "remaining - 4"
 *    in size_t; when the compiled data already fills 508 of the 511 bytes
 *    (127 four-byte macros, or fewer macros with short literals between
 *    them) that underflows, the length check never fails, and the next
 *    literal is copied without bound over the stack.  Not fixed in Debian
 *    12.  Checked on this machine: the explanation "%{d}" x 127 followed
 *    by 300 bytes of text, and a 3,932-byte record whose exists: target is
 *    "x%{d}" x 42, "%{d}" and 3,700 bytes of text, both abort with "stack
 *    smashing detected" in SPF_record_compile_macro()/_compile().
 *  - CVE-2021-33913: SPF_record_expand_data() (spf_expand.c) reuses the
 *    length of the last label of a reversed value (%{lr}) as the length of
 *    the whole value and sizes the URL-encoding buffer from it, so a macro
 *    that is both reversed and URL-encoded (upper-case letter: %{Lr},
 *    %{D2r}, %{IR}) overflows the heap by up to three times the value.
 *    Fixed in Debian 1.2.10-7.1.
 *  - CVE-2021-33912: the same function URL-encodes with sprintf("%%%02x")
 *    on a signed char, so a byte >= 0x80 in a URL-encoded value writes
 *    "%ffffffXX" where 3 bytes were reserved.  Fixed in Debian 1.2.10-7.1.
 *  - libspf2 also reads transformer digits into an int without an
 *    overflow check (%{d4294967297} is undefined behaviour and can wrap to
 *    a depth it accepts).
 *
 * The rule, applied to every macro-string (the domain-spec of a
 * mechanism, redirect= and exp=, the value of an unknown modifier, and
 * explanation text), both as RFC 7208 reads it and as libspf2 1.2.10 reads
 * it (libspf2 compiles explanation text as one string and takes a space
 * like a "%": "see {Lr}" holds a macro for libspf2 and none for the RFC):
 *
 *  1. Its libspf2-compiled form (a 4-byte header plus the text, rounded up
 *     to 4, per literal run; 4 bytes per macro; 4 more for a CIDR length)
 *     must leave room for one more 4-byte header in the 511-byte area:
 *     at most 504 bytes (AG_SPF_COMPILED_MAX).  That keeps every write of
 *     SPF_c_parse_macro() inside the area with or without the 20314 fix,
 *     and the 42118 subtraction from underflowing.  libspf2 itself refuses
 *     anything over 511 bytes (after the overflow), and every literal run
 *     over 255 bytes, so only compiled sizes of 505 to 511 bytes that
 *     libspf2 would have taken are lost: over 120 macros, or a 500-byte
 *     name, in one domain-spec.
 *  2. No macro may be both URL-encoded (upper-case letter) and reversed
 *     ("r" or "R" transformer): the 33913 trigger.  No record of the RFC
 *     7208 test suite does that; URL encoding is for explanation text.
 *  3. A transformer has at most 3 digits and a value of 1 to 128: the RFC
 *     forbids 0 (7.3), libspf2 refuses more than 128 itself (the RFC asks
 *     for at least 127), and 3 digits keep its int from overflowing.
 *     Leading zeros ("%{d01}") are valid RFC syntax and harmless: allowed.
 *
 * What the rule cannot cover: 33912 is triggered by the values of the
 * macros, not the record.  Every byte of a record or explanation here is
 * printable ASCII, so a byte >= 0x80 can only come from the request
 * (MAIL FROM local part and domain, HELO) or from DNS (PTR names for %{p}).
 * Refusing URL-encoded letters instead would refuse valid records of the
 * test suite (exp=msg8.%{D2}, "%{L}" and "%{S}" in explanations).  The
 * installed libspf2 has the fix; against an unfixed one the caller must
 * keep those values ASCII.  No bound on how long a domain-spec expands
 * to, or on macros per record, is needed: SPF_record_expand_data() sizes
 * its buffers in a first pass over the actual values, and rule 1 already
 * bounds macros per string (126).  "No more than one r per macro" is the
 * ABNF itself (transformers = *DIGIT [ "r" ], and "r" is no delimiter).
 */
#include "log.h"
#include "spfrecord.h"

#include <arpa/inet.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define AG_SPF_VERSION "v=spf1"	/* 4.5: version section */
#define AG_SPF_VERSION_LEN 6
#define AG_SPF_IP4_CIDR_MAX 32	/* 5.6: ip4-cidr-length 0-32 */
#define AG_SPF_IP6_CIDR_MAX 128	/* 5.6: ip6-cidr-length 0-128 */
#define AG_SPF_IP6_TEXT_MAX 45	/* RFC 4291 2.2: longest textual form */

/* libspf2 1.2.10 internals the safety rule depends on. */
#define AG_LIBSPF2_DATA_MAX 511	/* SPF_MAX_MECH_LEN, SPF_MAX_MOD_LEN */
#define AG_LIBSPF2_ITEM 4	/* sizeof(SPF_data_t); _ALIGN_SZ */
/* Rule 1: compiled bytes per macro-string, leaving room for one header. */
#define AG_SPF_COMPILED_MAX \
	((AG_LIBSPF2_DATA_MAX - AG_LIBSPF2_ITEM) / AG_LIBSPF2_ITEM * \
	    AG_LIBSPF2_ITEM)
/* Rule 3: transformer digits and value (RFC 7208 7.3: nonzero). */
#define AG_SPF_XFORM_DIGITS 3
#define AG_SPF_XFORM_MAX 128


/* Where a macro-string appears: which letters and characters it may hold. */
enum ms_kind {
	MS_DOMAIN,	/* domain-spec: no c, r, t */
	MS_VALUE,	/* unknown modifier value: no c, r, t */
	MS_EXPLAIN	/* explanation text: all letters, spaces */
};

enum mech { M_ALL, M_INCLUDE, M_A, M_MX, M_PTR, M_IP4, M_IP6, M_EXISTS };

static const struct {
	const char *name;
	enum mech mech;
	bool dns;	/* counts against the 10 DNS terms (4.6.4) */
} mechanisms[] = {
	{ "all", M_ALL, false },
	{ "include", M_INCLUDE, true },
	{ "a", M_A, true },
	{ "mx", M_MX, true },
	{ "ptr", M_PTR, true },
	{ "ip4", M_IP4, false },
	{ "ip6", M_IP6, false },
	{ "exists", M_EXISTS, true },
};

/* One check in progress: where to write the reason, what was seen. */
struct chk {
	char *why;
	size_t whylen;
	unsigned term;	/* 1-based term number, 0 outside the terms */
	bool seen_redirect, seen_exp;
	struct ag_spf_record_info info;
};

static inline bool
is_digit(int c)
{
	return c >= '0' && c <= '9';
}

static inline bool
is_alpha(int c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static inline bool
is_upper(int c)
{
	return c >= 'A' && c <= 'Z';
}

static inline bool
is_alnum(int c)
{
	return is_alpha(c) || is_digit(c);
}

static inline int
to_lower(int c)
{
	return is_upper(c) ? c - 'A' + 'a' : c;
}

/* Is C one of the characters of SET (never true for NUL)? */
static inline bool
in_set(int c, const char *set)
{
	return c != '\0' && strchr(set, c) != NULL;
}

/* Does S (N bytes) equal the lower-case WORD, ignoring case? */
static bool
word_eq(const char *s, size_t n, const char *word)
{
	size_t i;

	if (strlen(word) != n) {
		return false;
	}
	for (i = 0; i < n; i++) {
		if (to_lower((unsigned char)s[i]) != word[i]) {
			return false;
		}
	}
	return true;
}

/* Round a compiled libspf2 item up to its alignment. */
static inline size_t
lib_align(size_t n)
{
	return (n + AG_LIBSPF2_ITEM - 1) / AG_LIBSPF2_ITEM * AG_LIBSPF2_ITEM;
}

/* Write the reason (after "term N: " inside a record); return AG_INVALID. */
__attribute__((format(printf, 2, 3))) static ag_status
fail(struct chk *ck, const char *fmt, ...)
{
	va_list ap;
	size_t off = 0;
	int n;

	if (ck->why == NULL || ck->whylen == 0) {
		return AG_INVALID;
	}
	if (ck->term > 0) {
		n = snprintf(ck->why, ck->whylen, "term %u: ", ck->term);
		off = n < 0 ? 0 : (size_t)n;
		if (off >= ck->whylen) {
			return AG_INVALID;
		}
	}
	va_start(ap, fmt);
	(void)vsnprintf(ck->why + off, ck->whylen - off, fmt, ap);
	va_end(ap);
	return AG_INVALID;
}

/* Refuse any byte that is not printable ASCII or a space (3.1, 4.6.1). */
static ag_status
check_bytes(struct chk *ck, const char *s, size_t len)
{
	size_t i;
	unsigned char c;

	for (i = 0; i < len; i++) {
		c = (unsigned char)s[i];
		if (c == '\0') {
			return fail(ck, "NUL byte at offset %zu", i);
		}
		if (c < 0x20 || c == 0x7f) {
			return fail(ck, "control character 0x%02x at offset %zu",
			    c, i);
		}
		if (c >= 0x80) {
			return fail(ck, "non-ASCII byte 0x%02x at offset %zu", c,
			    i);
		}
	}
	return AG_OK;
}

/*
 * Rules 2 and 3 for one macro: LETTER, NDIG transformer digits at DIG,
 * REV if reversed.
 */
static ag_status
safe_macro(struct chk *ck, const char *what, int letter, const char *dig,
    size_t ndig, bool rev)
{
	unsigned v = 0;
	size_t i;

	if (is_upper(letter) && rev) {
		return fail(ck, "%s: macro %%{%c...r} both URL-encodes and "
		    "reverses (refused: libspf2 CVE-2021-33913)", what, letter);
	}
	if (ndig > AG_SPF_XFORM_DIGITS) {
		return fail(ck, "%s: macro transformer of %zu digits (at most "
		    "%d)", what, ndig, AG_SPF_XFORM_DIGITS);
	}
	for (i = 0; i < ndig; i++) {
		v = v * 10 + (unsigned)(dig[i] - '0');
	}
	if (ndig > 0 && (v == 0 || v > AG_SPF_XFORM_MAX)) {
		return fail(ck, "%s: macro transformer %u out of range (1..%d)",
		    what, v, AG_SPF_XFORM_MAX);
	}
	return AG_OK;
}

/*
 * One RFC 7208 macro-expand body at S (just after "%{"): letter,
 * transformers, delimiters, "}".  *USED gets the bytes taken.
 */
static ag_status
rfc_macro(struct chk *ck, const char *what, const char *s, size_t len,
    enum ms_kind kind, size_t *used)
{
	size_t i = 1, ndig;
	int letter, lc;
	bool rev = false;
	ag_status st;

	if (len == 0) {
		return fail(ck, "%s: unterminated macro", what);
	}
	letter = (unsigned char)s[0];
	lc = to_lower(letter);
	if (!in_set(lc, "slodiphcrtv")) {
		return fail(ck, "%s: unknown macro letter \"%c\"", what, letter);
	}
	if (kind != MS_EXPLAIN && in_set(lc, "crt")) {
		return fail(ck, "%s: macro letter \"%c\" is only allowed in "
		    "explanation text", what, letter);
	}
	while (i < len && is_digit(s[i])) {
		i++;
	}
	ndig = i - 1;
	if (i < len && (s[i] == 'r' || s[i] == 'R')) {
		rev = true;
		i++;
	}
	while (i < len && in_set(s[i], ".-+,/_=")) {
		i++;
	}
	if (i == len) {
		return fail(ck, "%s: unterminated macro", what);
	}
	if (s[i] != '}') {
		return fail(ck, "%s: bad character \"%c\" in macro", what, s[i]);
	}
	st = safe_macro(ck, what, letter, s + 1, ndig, rev);
	*used = i + 1;
	return st;
}

/*
 * S (LEN bytes) as an RFC 7208 macro-string (explain-string for
 * MS_EXPLAIN).  *LAST_MACRO tells whether it ends with a macro-expand,
 * *MACROS counts the "%{...}" macros.
 */
static ag_status
rfc_macro_string(struct chk *ck, const char *what, const char *s,
    size_t len, enum ms_kind kind, bool *last_macro, unsigned *macros)
{
	size_t i = 0, used = 0;
	ag_status st;
	char c;

	*last_macro = false;
	*macros = 0;
	while (i < len) {
		if (s[i] != '%') {
			if (s[i] == ' ' && kind != MS_EXPLAIN) {
				return fail(ck, "%s: space in a macro-string",
				    what);
			}
			*last_macro = false;
			i++;
			continue;
		}
		if (i + 1 == len) {
			return fail(ck, "%s: \"%%\" at the end", what);
		}
		c = s[i + 1];
		if (c == '%' || c == '_' || c == '-') {
			i += 2;
		} else if (c == '{') {
			st = rfc_macro(ck, what, s + i + 2, len - i - 2, kind,
			    &used);
			if (st != AG_OK) {
				return st;
			}
			i += 2 + used;
			(*macros)++;
		} else {
			return fail(ck, "%s: \"%%\" followed by \"%c\" (want {, "
			    "%%, _ or -)", what, c);
		}
		*last_macro = true;
	}
	return AG_OK;
}

/*
 * A macro as libspf2's SPF_c_parse_var() reads it at S (after the "{"):
 * a letter (upper case: URL-encode), digits, a lower-case "r".  Apply
 * rules 2 and 3 and return the bytes up to the end of the macro.
 */
static ag_status
lib_macro(struct chk *ck, const char *what, const char *s, size_t len,
    size_t *used)
{
	size_t i = 1, ndig;
	ag_status st;

	if (len == 0) {
		*used = 0;
		return AG_OK;
	}
	while (i < len && is_digit(s[i])) {
		i++;
	}
	ndig = i - 1;
	st = safe_macro(ck, what, (unsigned char)s[0], s + 1, ndig,
	    i < len && s[i] == 'r');
	while (i < len && s[i] != '}' && s[i] != ' ') {
		i++;
	}
	*used = i < len && s[i] == '}' ? i + 1 : i;
	return st;
}

/*
 * Rule 1 and the libspf2 view of rules 2 and 3: walk S as libspf2
 * 1.2.10's SPF_c_parse_macro() does, starting with BASE bytes already
 * compiled (a CIDR item), and refuse a compiled size over
 * AG_SPF_COMPILED_MAX.  libspf2 takes a space like a "%" (only
 * explanation text has spaces).
 */
static ag_status
lib_check(struct chk *ck, const char *what, const char *s, size_t len,
    size_t base)
{
	size_t i = 0, used = base, lit = 0, n;
	ag_status st;
	char c;

	while (i < len) {
		if (s[i] != '%' && s[i] != ' ') {
			lit++;
			i++;
			continue;
		}
		i++;
		c = i < len ? s[i] : '\0';
		if (c == '%' || c == '_') {
			lit++;
			i++;
		} else if (c == '-') {
			lit += 3;	/* "%20" */
			i++;
		} else if (c == '{') {
			used += lit > 0 ? lib_align(AG_LIBSPF2_ITEM + lit) : 0;
			lit = 0;
			st = lib_macro(ck, what, s + i + 1, len - i - 1, &n);
			if (st != AG_OK) {
				return st;
			}
			used += AG_LIBSPF2_ITEM;
			i += 1 + n;
		} else {
			lit++;	/* libspf2 keeps the "%" as text */
		}
	}
	used += lit > 0 ? lib_align(AG_LIBSPF2_ITEM + lit) : 0;
	if (used > AG_SPF_COMPILED_MAX) {
		return fail(ck, "%s: too long for libspf2 (compiles to %zu "
		    "bytes, at most %d; CVE-2023-42118)", what, used,
		    AG_SPF_COMPILED_MAX);
	}
	return AG_OK;
}

/* A top label (7.1 toplabel): LDH, alphanumeric ends, not all digits. */
static ag_status
toplabel(struct chk *ck, const char *what, const char *t, size_t n)
{
	char q[AG_LOG_QUOTE_SIZE];
	bool digits_only = true;
	size_t i;

	if (n == 0) {
		return fail(ck, "%s: empty top label", what);
	}
	for (i = 0; i < n; i++) {
		if (!is_alnum(t[i]) && t[i] != '-') {
			return fail(ck, "%s: bad top label \"%s\"", what,
			    ag_log_quote(q, sizeof(q), t, n));
		}
		if (!is_digit(t[i])) {
			digits_only = false;
		}
	}
	if (t[0] == '-' || t[n - 1] == '-') {
		return fail(ck, "%s: top label \"%s\" starts or ends with \"-\"",
		    what, ag_log_quote(q, sizeof(q), t, n));
	}
	if (digits_only) {
		return fail(ck, "%s: top label \"%s\" is all digits", what,
		    ag_log_quote(q, sizeof(q), t, n));
	}
	return AG_OK;
}

/*
 * A domain-spec (7.1): macro-string, then a macro-expand or "." toplabel
 * [ "." ].  BASE: bytes libspf2 has compiled before it (a CIDR item).
 */
static ag_status
domain_spec(struct chk *ck, const char *what, const char *s, size_t len,
    size_t base)
{
	char q[AG_LOG_QUOTE_SIZE];
	bool last_macro;
	unsigned macros;
	size_t end, dot;
	ag_status st;

	if (len == 0) {
		return fail(ck, "%s: empty domain", what);
	}
	st = rfc_macro_string(ck, what, s, len, MS_DOMAIN, &last_macro,
	    &macros);
	if (st != AG_OK) {
		return st;
	}
	if (!last_macro) {
		end = s[len - 1] == '.' ? len - 1 : len;
		for (dot = end; dot > 0 && s[dot - 1] != '.'; dot--) {
			continue;
		}
		if (dot == 0) {
			return fail(ck, "%s: \"%s\" has no dot before a top "
			    "label", what, ag_log_quote(q, sizeof(q), s, len));
		}
		st = toplabel(ck, what, s + dot, end - dot);
		if (st != AG_OK) {
			return st;
		}
	}
	if (macros > 0) {
		ck->info.has_macros = true;
	}
	return lib_check(ck, what, s, len, base);
}

/* A domain-spec that may not carry a CIDR length (include, exists, ptr). */
static ag_status
domain_no_cidr(struct chk *ck, const char *what, const char *s, size_t len)
{
	size_t j = len;

	while (j > 0 && is_digit(s[j - 1])) {
		j--;
	}
	if (j < len && j > 0 && s[j - 1] == '/') {
		return fail(ck, "%s: no prefix length allowed", what);
	}
	return domain_spec(ck, what, s, len, 0);
}

/* The digits of a CIDR length (5.6): no leading zero, 0..MAX; FAM names
 * which of a dual length it is, if any. */
static ag_status
cidr_len(struct chk *ck, const char *what, const char *fam, const char *d,
    size_t n, unsigned max)
{
	char q[AG_LOG_QUOTE_SIZE];
	unsigned v = 0;
	size_t i;

	if (n == 0) {
		return fail(ck, "%s: missing prefix length", what);
	}
	for (i = 0; i < n; i++) {
		if (!is_digit(d[i])) {
			return fail(ck, "%s: bad prefix length \"%s\"", what,
			    ag_log_quote(q, sizeof(q), d, n));
		}
	}
	if (n > 1 && d[0] == '0') {
		return fail(ck, "%s: prefix length \"%s\" has a leading zero",
		    what, ag_log_quote(q, sizeof(q), d, n));
	}
	for (i = 0; i < n && v <= max; i++) {
		v = v * 10 + (unsigned)(d[i] - '0');
	}
	if (v > max) {
		return fail(ck, "%s: %s%sprefix length %s out of range (0..%u)",
		    what, fam != NULL ? fam : "", fam != NULL ? " " : "",
		    ag_log_quote(q, sizeof(q), d, n), max);
	}
	return AG_OK;
}

/* "/" ip4-cidr-length [ "//" ip6-cidr-length ], or "//" ip6 alone. */
static ag_status
dual_cidr(struct chk *ck, const char *what, const char *r, size_t n)
{
	const char *slash;
	size_t j;
	ag_status st;

	if (n >= 2 && r[1] == '/') {
		return cidr_len(ck, what, "ip6", r + 2, n - 2,
		    AG_SPF_IP6_CIDR_MAX);
	}
	slash = memchr(r + 1, '/', n - 1);
	j = slash != NULL ? (size_t)(slash - r) : n;
	st = cidr_len(ck, what, "ip4", r + 1, j - 1, AG_SPF_IP4_CIDR_MAX);
	if (st != AG_OK || j == n) {
		return st;
	}
	if (j + 1 == n || r[j + 1] != '/') {
		return fail(ck, "%s: bad dual prefix length (want /N//M)",
		    what);
	}
	return cidr_len(ck, what, "ip6", r + j + 2, n - j - 2,
	    AG_SPF_IP6_CIDR_MAX);
}

/*
 * a and mx (5.3, 5.4): [ ":" domain-spec ] [ dual-cidr-length ].  A
 * domain-spec never ends in "/" and digits, so a CIDR length is whatever
 * "/N", "//N" or "/N//M" ends the argument.
 */
static ag_status
a_mx(struct chk *ck, const char *what, const char *r, size_t n)
{
	size_t end = n, j;

	if (n == 0) {
		return AG_OK;
	}
	if (r[0] == '/') {
		return dual_cidr(ck, what, r, n);
	}
	if (r[0] != ':') {
		return fail(ck, "%s: \"%c\" after the mechanism name", what,
		    r[0]);
	}
	for (j = n; j > 0 && is_digit(r[j - 1]); j--) {
		continue;
	}
	if (j < n && j > 1 && r[j - 1] == '/') {
		end = j - 1;
		if (end > 1 && r[end - 1] == '/') {
			end--;
			for (j = end; j > 0 && is_digit(r[j - 1]); j--) {
				continue;
			}
			if (j < end && j > 1 && r[j - 1] == '/') {
				end = j - 1;
			}
		}
	}
	if (end < n) {
		ag_status st = dual_cidr(ck, what, r + end, n - end);
		if (st != AG_OK) {
			return st;
		}
	}
	return domain_spec(ck, what, r + 1, end - 1,
	    end < n ? AG_LIBSPF2_ITEM : 0);
}

/* ip4-network (5.6): four qnum, no leading zeros. */
static bool
ip4_network(const char *s, size_t n)
{
	size_t i = 0, start;
	unsigned v, parts = 0;

	for (;;) {
		start = i;
		v = 0;
		while (i < n && is_digit(s[i]) && i - start < 3) {
			v = v * 10 + (unsigned)(s[i] - '0');
			i++;
		}
		if (i == start || (i - start > 1 && s[start] == '0') ||
		    v > 255) {
			return false;
		}
		parts++;
		if (i == n) {
			return parts == 4;
		}
		if (s[i] != '.' || parts == 4) {
			return false;
		}
		i++;
	}
}

/* ip6-network: a textual IPv6 address of RFC 4291 2.2. */
static bool
ip6_network(const char *s, size_t n)
{
	char buf[AG_SPF_IP6_TEXT_MAX + 1];
	struct in6_addr a;

	if (n == 0 || n > AG_SPF_IP6_TEXT_MAX) {
		return false;
	}
	memcpy(buf, s, n);
	buf[n] = '\0';
	return inet_pton(AF_INET6, buf, &a) == 1;
}

/* ip4 and ip6 (5.6): ":" network [ "/" length ], no dual length. */
static ag_status
ip_mech(struct chk *ck, const char *what, const char *r, size_t n,
    bool v6)
{
	char q[AG_LOG_QUOTE_SIZE];
	const char *slash;
	size_t alen;
	bool ok;

	if (n == 0 || r[0] != ':') {
		return fail(ck, "%s: needs \":\" and an address", what);
	}
	r++;
	n--;
	slash = memchr(r, '/', n);
	alen = slash != NULL ? (size_t)(slash - r) : n;
	ok = v6 ? ip6_network(r, alen) : ip4_network(r, alen);
	if (!ok) {
		return fail(ck, "%s: bad address \"%s\"", what,
		    ag_log_quote(q, sizeof(q), r, alen));
	}
	if (slash == NULL) {
		return AG_OK;
	}
	if (memchr(r + alen + 1, '/', n - alen - 1) != NULL) {
		return fail(ck, "%s: dual prefix length not allowed", what);
	}
	return cidr_len(ck, what, NULL, r + alen + 1,
	    n - alen - 1, v6 ? AG_SPF_IP6_CIDR_MAX : AG_SPF_IP4_CIDR_MAX);
}

/* The argument R (N bytes, after the name) of mechanism M. */
static ag_status
mech_args(struct chk *ck, enum mech m, const char *what, const char *r,
    size_t n)
{
	switch (m) {
	case M_ALL:
		if (n > 0) {
			return fail(ck, "%s: takes no argument", what);
		}
		return AG_OK;
	case M_INCLUDE:
	case M_EXISTS:
	case M_PTR:
		if (n == 0 && m == M_PTR) {
			return AG_OK;
		}
		if (n > 0 && r[0] == '/') {
			return fail(ck, "%s: no prefix length allowed", what);
		}
		if (n == 0 || r[0] != ':') {
			return fail(ck, "%s: needs \":\" and a domain", what);
		}
		return domain_no_cidr(ck, what, r + 1, n - 1);
	case M_A:
	case M_MX:
		return a_mx(ck, what, r, n);
	case M_IP4:
	case M_IP6:
		return ip_mech(ck, what, r, n, m == M_IP6);
	}
	return fail(ck, "%s: unknown mechanism", what);
}

/* A term that is no modifier: unknown mechanism or bad modifier name. */
static ag_status
bad_directive(struct chk *ck, const char *t, size_t n)
{
	char q[AG_LOG_QUOTE_SIZE];
	const char *eq;
	size_t h;

	for (h = 0; h < n && t[h] != ':' && t[h] != '/'; h++) {
		continue;
	}
	eq = memchr(t, '=', h);
	if (eq == t) {
		return fail(ck, "empty modifier name");
	}
	if (eq != NULL) {
		return fail(ck, "bad modifier name \"%s\"",
		    ag_log_quote(q, sizeof(q), t, (size_t)(eq - t)));
	}
	if (h < n && t[h] == ':' &&
	    (word_eq(t, h, "redirect") || word_eq(t, h, "exp"))) {
		return fail(ck, "%s is a modifier: \"=\", not \":\"",
		    ag_log_quote(q, sizeof(q), t, h));
	}
	return fail(ck, "unknown mechanism \"%s\"", ag_log_quote(q, sizeof(q), t, h));
}

/* directive = [ qualifier ] mechanism (4.6.2, 5). */
static ag_status
directive(struct chk *ck, const char *t, size_t n)
{
	size_t i = 0, nl, k;

	if (in_set(t[0], "+-?~")) {
		i = 1;
	}
	for (nl = i; nl < n && is_alnum(t[nl]); nl++) {
		continue;
	}
	for (k = 0; k < sizeof(mechanisms) / sizeof(mechanisms[0]); k++) {
		if (word_eq(t + i, nl - i, mechanisms[k].name)) {
			break;
		}
	}
	if (k == sizeof(mechanisms) / sizeof(mechanisms[0])) {
		return bad_directive(ck, t + i, n - i);
	}
	if (nl < n && t[nl] != ':' && t[nl] != '/') {
		return fail(ck, "%s: \"%c\" after the mechanism name",
		    mechanisms[k].name, t[nl]);
	}
	if (mechanisms[k].dns) {
		ck->info.dns_terms++;
	}
	if (mechanisms[k].mech == M_ALL) {
		ck->info.has_all = true;
	}
	if (mechanisms[k].mech == M_PTR) {
		ck->info.has_ptr = true;
	}
	return mech_args(ck, mechanisms[k].mech, mechanisms[k].name, t + nl,
	    n - nl);
}

/* modifier = redirect / explanation / unknown-modifier (6, 4.6.1). */
static ag_status
modifier(struct chk *ck, const char *name, size_t nn, const char *v,
    size_t vn)
{
	char what[AG_LOG_QUOTE_SIZE + 8], q[AG_LOG_QUOTE_SIZE];
	bool last_macro;
	unsigned macros;
	ag_status st;

	if (word_eq(name, nn, "redirect")) {
		if (ck->seen_redirect) {
			return fail(ck, "redirect= given twice");
		}
		ck->seen_redirect = ck->info.has_redirect = true;
		ck->info.dns_terms++;
		return domain_spec(ck, "redirect=", v, vn, 0);
	}
	if (word_eq(name, nn, "exp")) {
		if (ck->seen_exp) {
			return fail(ck, "exp= given twice");
		}
		ck->seen_exp = ck->info.has_exp = true;
		return domain_spec(ck, "exp=", v, vn, 0);
	}
	(void)snprintf(what, sizeof(what), "%s=", ag_log_quote(q, sizeof(q), name,
	    nn));
	st = rfc_macro_string(ck, what, v, vn, MS_VALUE, &last_macro,
	    &macros);
	if (st != AG_OK) {
		return st;
	}
	if (macros > 0) {
		ck->info.has_macros = true;
	}
	return lib_check(ck, what, v, vn, 0);
}

/* One term: a modifier if a name is followed by "=", else a directive. */
static ag_status
term(struct chk *ck, const char *t, size_t n)
{
	size_t i;

	if (is_alpha(t[0])) {
		for (i = 1; i < n && (is_alnum(t[i]) || in_set(t[i], "-_."));
		    i++) {
			continue;
		}
		if (i < n && t[i] == '=') {
			return modifier(ck, t, i, t + i + 1, n - i - 1);
		}
	}
	return directive(ck, t, n);
}

bool
ag_spf_record_is_spf(const char *txt, size_t len)
{
	if (txt == NULL || len < AG_SPF_VERSION_LEN ||
	    !word_eq(txt, AG_SPF_VERSION_LEN, AG_SPF_VERSION)) {
		return false;
	}
	return len == AG_SPF_VERSION_LEN || txt[AG_SPF_VERSION_LEN] == ' ';
}

ag_status
ag_spf_record_check(const char *rec, size_t len,
    struct ag_spf_record_info *info, char *why, size_t whylen)
{
	struct chk ck;
	size_t i, start;
	ag_status st;

	memset(&ck, 0, sizeof(ck));
	ck.why = why;
	ck.whylen = whylen;
	if (why != NULL && whylen > 0) {
		why[0] = '\0';
	}
	if (info != NULL) {
		memset(info, 0, sizeof(*info));
	}
	if (rec == NULL) {
		return fail(&ck, "no record");
	}
	if (len > AG_SPF_RECORD_MAX) {
		return fail(&ck, "record of %zu bytes (at most %d)", len,
		    AG_SPF_RECORD_MAX);
	}
	if (!ag_spf_record_is_spf(rec, len)) {
		return fail(&ck, "not an SPF record (\"v=spf1\" then a space "
		    "or the end)");
	}
	st = check_bytes(&ck, rec, len);
	for (i = AG_SPF_VERSION_LEN; st == AG_OK && i < len;) {
		if (rec[i] == ' ') {
			i++;
			continue;
		}
		for (start = i; i < len && rec[i] != ' '; i++) {
			continue;
		}
		ck.term++;
		st = term(&ck, rec + start, i - start);
	}
	if (st == AG_OK && info != NULL) {
		*info = ck.info;
	}
	return st;
}

ag_status
ag_spf_explanation_check(const char *txt, size_t len, char *why,
    size_t whylen)
{
	struct chk ck;
	bool last_macro;
	unsigned macros;
	ag_status st;

	memset(&ck, 0, sizeof(ck));
	ck.why = why;
	ck.whylen = whylen;
	if (why != NULL && whylen > 0) {
		why[0] = '\0';
	}
	if (txt == NULL) {
		return fail(&ck, "no explanation");
	}
	st = check_bytes(&ck, txt, len);
	if (st == AG_OK) {
		st = rfc_macro_string(&ck, "explanation", txt, len, MS_EXPLAIN,
		    &last_macro, &macros);
	}
	if (st == AG_OK) {
		st = lib_check(&ck, "explanation", txt, len, 0);
	}
	return st;
}

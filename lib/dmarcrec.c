/*
 * dmarcrec.c - parse a DMARC policy record (RFC 7489 6.3, 6.4, 6.6.3 and
 * the np tag of RFC 9091) and pick the one record of a _dmarc answer.
 *
 * The grammar is the tag-list of RFC 7489 6.4, which points to the DKIM
 * tag=value syntax (RFC 6376 3.2): tags separated by ";", white space
 * around tags, "=" and ";" (SP and HTAB, and CR and LF as folded DNS text
 * sometimes carries them), a trailing ";" and empty tags allowed, tag
 * names ALPHA *(ALPHA / DIGIT / "_").  Every byte must be printable ASCII
 * or that white space.
 *
 * Choices the RFC leaves to the reader, and why:
 *  - Case.  The value "DMARC1" is case-sensitive: the ABNF spells it
 *    %x44 %x4d %x41 %x52 %x43 %x31, and 6.3 says it "MUST match
 *    precisely", so "v=dmarc1" is not a DMARC record (NONE).  Everything
 *    the ABNF writes as a quoted string is case-insensitive (RFC 5234
 *    2.3): tag names ("V=DMARC1", "P=reject"), the p/sp/np keywords,
 *    r/s, fo options, the k/m/g/t size units and the "mailto" scheme.
 *  - v= must be the first tag (6.3).  p= may come anywhere after it: the
 *    ABNF puts it second, but receivers in the field accept it anywhere,
 *    and DMARCbis drops the rule; refusing would only lose policies.
 *  - A tag name seen twice (unknown tags and v= included) makes the
 *    whole record INVALID: DKIM 3.2, whose tag-list DMARC uses, says
 *    "the entire tag-list is invalid", and a receiver cannot know which
 *    value the domain meant.
 *  - A malformed tag (no "=", a bad name) makes the record INVALID: the
 *    tag-list itself is broken.  A well-formed unknown tag is ignored
 *    (6.3: "Unknown tags MUST be ignored"), as are the DMARCbis tags psd=
 *    and t= for now.
 *  - p= missing or invalid, or sp= invalid: 6.6.3 step 6.  If rua= holds
 *    at least one syntactically valid URI (any scheme) the record reads
 *    as "v=DMARC1; p=none" plus its reporting tags (p_from_rua); else it
 *    is INVALID and the message gets no DMARC processing.
 *  - A bad value of any other known tag (pct=101, pct=-1, pct=5x,
 *    adkim=x, ri=junk, fo=2, rf=, np=junk) ignores that tag, so its
 *    default applies, and counts it in "ignored" with a note in ERR.
 *    6.6.3 names only p and sp as fatal; dropping a p=reject record over
 *    a typo in pct would fail open.  For pct the default (100) is the
 *    domain's policy in full, which is also what "pct=101" meant.  pct is
 *    1*3DIGIT (leading zeros allowed) and at most 100.  An invalid np=
 *    falls back to sp=/p= (RFC 9091 4.1, as if absent).
 *  - rua=/ruf=: a comma-separated list (6.4), each URI with an optional
 *    "!" size (1*DIGIT and one of k, m, g, t).  "," and "!" inside a URI
 *    must be percent-encoded (6.2), so the first "!" starts the size.  A
 *    bad URI is skipped and counted, the others are kept; a URI is valid
 *    when it has an RFC 3986 scheme, a non-empty rest of URI characters
 *    and well-formed %XX escapes, and a mailto: URI also needs a "@" with
 *    something on both sides before any "?".
 *  - Length: over AG_DMARC_RECORD_MAX bytes is INVALID (a real record is
 *    a few hundred bytes); the v=DMARC1 test comes first, so 64 KB of
 *    junk that does not start with it is simply NONE.
 *
 * Ownership: nothing is allocated; OUT and ERR are the caller's.
 * Thread-safe: no state.
 */
#include "log.h"
#include "dmarcrec.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define AG_DMARC_VERSION "DMARC1"	/* 6.3: v=, exact */
#define AG_DMARC_VERSION_LEN 6
#define AG_DMARC_PCT_DIGITS 3		/* 6.4: dmarc-percent 1*3DIGIT */
#define AG_DMARC_PCT_MAX 100		/* 6.3: 0..100 */
/* Every tag takes at least "x=" and a ";": a bound on tags per record. */
#define AG_DMARC_TAGS_MAX (AG_DMARC_RECORD_MAX / 2)

/* What a tag that decides the policy held. */
enum tstate { T_ABSENT, T_OK, T_BAD };

/* One parse in progress. */
struct pst {
	const char *txt;
	struct ag_dmarc_record *out;
	char *err;
	size_t errlen;
	bool noted;			/* a note is in ERR already */
	enum tstate p, sp;
	const char *pol_val[2];		/* p= and sp= values, for ERR */
	size_t pol_len[2];
	unsigned rua_valid;		/* valid URIs in rua=, any scheme */
	size_t nseen;			/* tag names seen, for duplicates */
	struct {
		uint16_t off, len;
	} seen[AG_DMARC_TAGS_MAX];
};

/* One rua= or ruf= list in OUT. */
struct urilist {
	const char *tag;
	size_t *n;
	char (*uri)[AG_DMARC_URI_SIZE];
	uint64_t *size;
	size_t max;
	unsigned *skipped, *bad;
	unsigned valid;
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
is_xdigit(int c)
{
	return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

static inline int
to_lower(int c)
{
	return c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c;
}

/* White space between tags, "=", ";", "," and ":" (see the top). */
static inline bool
is_ws(int c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
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

/* Do A and B (N bytes each) match, ignoring ASCII case? */
static bool
name_eq(const char *a, const char *b, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		if (to_lower((unsigned char)a[i]) !=
		    to_lower((unsigned char)b[i])) {
			return false;
		}
	}
	return true;
}

/* Trim white space off both ends of [*S, *S + *N). */
static void
trim(const char **s, size_t *n)
{
	while (*n > 0 && is_ws((unsigned char)(*s)[0])) {
		(*s)++;
		(*n)--;
	}
	while (*n > 0 && is_ws((unsigned char)(*s)[*n - 1])) {
		(*n)--;
	}
}

/* Write FMT into ERR (if any). */
__attribute__((format(printf, 3, 0))) static void
verr(char *err, size_t errlen, const char *fmt, va_list ap)
{
	if (err != NULL && errlen > 0) {
		(void)vsnprintf(err, errlen, fmt, ap);
	}
}

/* Write the reason the record is unusable; returns AG_DMARC_REC_INVALID. */
__attribute__((format(printf, 2, 3))) static enum ag_dmarc_rec_status
fail(struct pst *ps, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	verr(ps->err, ps->errlen, fmt, ap);
	va_end(ap);
	return AG_DMARC_REC_INVALID;
}

/* Keep the first note on something skipped in ERR. */
__attribute__((format(printf, 2, 0))) static void
vnote(struct pst *ps, const char *fmt, va_list ap)
{
	if (!ps->noted) {
		ps->noted = true;
		verr(ps->err, ps->errlen, fmt, ap);
	}
}

/* Note a bad list item that was skipped. */
__attribute__((format(printf, 2, 3))) static void
note(struct pst *ps, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vnote(ps, fmt, ap);
	va_end(ap);
}

/* Note a tag whose value was bad and which was ignored; count it. */
__attribute__((format(printf, 2, 3))) static void
ignore(struct pst *ps, const char *fmt, ...)
{
	va_list ap;

	ps->out->ignored++;
	va_start(ap, fmt);
	vnote(ps, fmt, ap);
	va_end(ap);
}

/* Write a status-level message into a caller's ERR (pick, bad args). */
__attribute__((format(printf, 3, 4))) static void
say(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	verr(err, errlen, fmt, ap);
	va_end(ap);
}

/* The defaults of RFC 7489 6.3. */
static void
rec_init(struct ag_dmarc_record *r)
{
	memset(r, 0, sizeof(*r));
	r->p = AG_DMARC_P_NONE;
	r->sp = AG_DMARC_P_NONE;
	r->np = AG_DMARC_P_NONE;
	r->pct = AG_DMARC_PCT_DEFAULT;
	r->ri = AG_DMARC_RI_DEFAULT;
	r->fo = AG_DMARC_FO_0;
}

/*
 * Does TXT start with the tag v=DMARC1 (6.3, 6.6.3 step 3)?  *END gets
 * the offset of the ";" after it, or LEN.
 */
static bool
version_end(const char *txt, size_t len, size_t *end)
{
	size_t i = 0;

	while (i < len && is_ws((unsigned char)txt[i])) {
		i++;
	}
	if (i == len || to_lower((unsigned char)txt[i]) != 'v') {
		return false;
	}
	for (i++; i < len && is_ws((unsigned char)txt[i]); i++) {
		continue;
	}
	if (i == len || txt[i] != '=') {
		return false;
	}
	for (i++; i < len && is_ws((unsigned char)txt[i]); i++) {
		continue;
	}
	if (len - i < AG_DMARC_VERSION_LEN ||
	    memcmp(txt + i, AG_DMARC_VERSION, AG_DMARC_VERSION_LEN) != 0) {
		return false;
	}
	for (i += AG_DMARC_VERSION_LEN; i < len && is_ws((unsigned char)txt[i]);
	    i++) {
		continue;
	}
	if (i < len && txt[i] != ';') {
		return false;
	}
	*end = i;
	return true;
}

/* p=, sp=, np=: none, quarantine or reject (6.3). */
static bool
policy_value(const char *v, size_t n, enum ag_dmarc_policy *out)
{
	if (word_eq(v, n, "none")) {
		*out = AG_DMARC_P_NONE;
	} else if (word_eq(v, n, "quarantine")) {
		*out = AG_DMARC_P_QUARANTINE;
	} else if (word_eq(v, n, "reject")) {
		*out = AG_DMARC_P_REJECT;
	} else {
		return false;
	}
	return true;
}

/* p= and sp=: a bad value is step 6 of 6.6.3, decided at the end. */
static void
tag_p_sp(struct pst *ps, const char *name, const char *v, size_t n)
{
	bool sub = to_lower((unsigned char)name[0]) == 's';
	enum ag_dmarc_policy pol;
	bool ok = policy_value(v, n, &pol);

	ps->pol_val[sub] = v;
	ps->pol_len[sub] = n;
	if (sub) {
		ps->sp = ok ? T_OK : T_BAD;
		ps->out->has_sp = ok;
		ps->out->sp = ok ? pol : AG_DMARC_P_NONE;
	} else {
		ps->p = ok ? T_OK : T_BAD;
		ps->out->p = ok ? pol : AG_DMARC_P_NONE;
	}
}

/* np= (RFC 9091 4.1): a bad value is ignored, sp=/p= then apply. */
static void
tag_np(struct pst *ps, const char *name, const char *v, size_t n)
{
	char q[AG_LOG_QUOTE_SIZE];
	enum ag_dmarc_policy pol;

	if (!policy_value(v, n, &pol)) {
		ignore(ps, "np: bad policy \"%s\", ignored", ag_log_quote(q, sizeof(q),
		    v, n));
		return;
	}
	ps->out->has_np = true;
	ps->out->np = pol;
}

/* pct= (6.3, 6.4): 1*3DIGIT, 0..100; otherwise the default 100. */
static void
tag_pct(struct pst *ps, const char *name, const char *v, size_t n)
{
	char q[AG_LOG_QUOTE_SIZE];
	unsigned val = 0;
	size_t i;

	for (i = 0; i < n && is_digit(v[i]); i++) {
		val = val * 10 + (unsigned)(v[i] - '0');
		if (i + 1 == AG_DMARC_PCT_DIGITS) {
			i++;
			break;
		}
	}
	if (n == 0 || i < n || val > AG_DMARC_PCT_MAX) {
		ignore(ps, "pct: \"%s\" is not an integer 0..100, ignored "
		    "(pct=100 applies)", ag_log_quote(q, sizeof(q), v, n));
		return;
	}
	ps->out->pct = val;
}

/* adkim= and aspf= (6.3): r or s; otherwise relaxed. */
static void
tag_align(struct pst *ps, const char *name, const char *v, size_t n)
{
	char q[AG_LOG_QUOTE_SIZE];
	bool dkim = to_lower((unsigned char)name[1]) == 'd';
	bool strict;

	if (word_eq(v, n, "s")) {
		strict = true;
	} else if (word_eq(v, n, "r")) {
		strict = false;
	} else {
		ignore(ps, "%s: \"%s\" is not r or s, ignored (relaxed "
		    "applies)", dkim ? "adkim" : "aspf", ag_log_quote(q, sizeof(q),
		    v, n));
		return;
	}
	if (dkim) {
		ps->out->adkim_strict = strict;
	} else {
		ps->out->aspf_strict = strict;
	}
}

/* ri= (6.3): 1*DIGIT seconds, at most UINT32_MAX here. */
static void
tag_ri(struct pst *ps, const char *name, const char *v, size_t n)
{
	char q[AG_LOG_QUOTE_SIZE];
	uint64_t val = 0;
	size_t i;

	for (i = 0; i < n && is_digit(v[i]) && val <= UINT32_MAX; i++) {
		val = val * 10 + (uint64_t)(v[i] - '0');
	}
	if (n == 0 || i < n || val > UINT32_MAX) {
		ignore(ps, "ri: \"%s\" is not a number of seconds, ignored",
		    ag_log_quote(q, sizeof(q), v, n));
		return;
	}
	ps->out->ri = (uint32_t)val;
}

/*
 * Split V (N bytes) at ":", white space allowed around each part (fo=,
 * rf=), and pass each part to OK.  False as soon as OK refuses one.
 */
static bool
colon_list(const char *v, size_t n,
    bool (*ok)(const char *, size_t, unsigned *), unsigned *acc)
{
	const char *end = v + n, *colon, *part;
	size_t plen;

	for (;;) {
		colon = memchr(v, ':', (size_t)(end - v));
		part = v;
		plen = (size_t)((colon != NULL ? colon : end) - v);
		trim(&part, &plen);
		if (!ok(part, plen, acc)) {
			return false;
		}
		if (colon == NULL) {
			return true;
		}
		v = colon + 1;
	}
}

/* One fo= option (6.3): 0, 1, d or s, into the bits *ACC. */
static bool
fo_option(const char *s, size_t n, unsigned *acc)
{
	if (n != 1) {
		return false;
	}
	switch (to_lower((unsigned char)s[0])) {
	case '0':
		*acc |= AG_DMARC_FO_0;
		return true;
	case '1':
		*acc |= AG_DMARC_FO_1;
		return true;
	case 'd':
		*acc |= AG_DMARC_FO_D;
		return true;
	case 's':
		*acc |= AG_DMARC_FO_S;
		return true;
	default:
		return false;
	}
}

/* One rf= format: a Keyword of RFC 5321 4.1.2 (Ldh-str). */
static bool
rf_keyword(const char *s, size_t n, unsigned *acc)
{
	size_t i;

	(void)acc;
	if (n == 0 || s[n - 1] == '-') {
		return false;
	}
	for (i = 0; i < n; i++) {
		if (!is_alpha(s[i]) && !is_digit(s[i]) && s[i] != '-') {
			return false;
		}
	}
	return true;
}

/* fo= (6.3): options separated by ":"; otherwise the default "0". */
static void
tag_fo(struct pst *ps, const char *name, const char *v, size_t n)
{
	char q[AG_LOG_QUOTE_SIZE];
	unsigned fo = 0;

	if (!colon_list(v, n, fo_option, &fo)) {
		ignore(ps, "fo: bad options \"%s\", ignored", ag_log_quote(q,
		    sizeof(q), v, n));
		return;
	}
	ps->out->fo = fo;
}

/* rf= (6.3): syntax only; only afrf exists and reports are not ours. */
static void
tag_rf(struct pst *ps, const char *name, const char *v, size_t n)
{
	char q[AG_LOG_QUOTE_SIZE];
	unsigned unused = 0;

	if (!colon_list(v, n, rf_keyword, &unused)) {
		ignore(ps, "rf: bad formats \"%s\", ignored", ag_log_quote(q,
		    sizeof(q), v, n));
	}
}

/* A character of a URI (RFC 3986 2.2, 2.3) other than "%", "," and "!". */
static bool
uri_char(int c)
{
	return is_alpha(c) || is_digit(c) ||
	    (c != '\0' && strchr("-._~:/?#[]@$&'()*+;=", c) != NULL);
}

/*
 * Is S (N bytes) a URI as rua=/ruf= may hold it: scheme ":" and at least
 * one URI character, "%" only as %XX?  *SCHEME gets the scheme length.
 */
static bool
uri_valid(const char *s, size_t n, size_t *scheme)
{
	size_t i = 1;

	if (n == 0 || !is_alpha(s[0])) {
		return false;
	}
	while (i < n && (is_alpha(s[i]) || is_digit(s[i]) || s[i] == '+' ||
	    s[i] == '-' || s[i] == '.')) {
		i++;
	}
	if (i + 1 >= n || s[i] != ':') {
		return false;
	}
	*scheme = i;
	for (i++; i < n; i++) {
		if (s[i] == '%') {
			if (n - i < 3 || !is_xdigit(s[i + 1]) ||
			    !is_xdigit(s[i + 2])) {
				return false;
			}
			i += 2;
		} else if (!uri_char(s[i])) {
			return false;
		}
	}
	return true;
}

/* Does the mailto: URI S (N bytes, from after the ":") hold an address? */
static bool
mailto_valid(const char *s, size_t n)
{
	const char *q = memchr(s, '?', n);
	const char *at;

	if (q != NULL) {
		n = (size_t)(q - s);
	}
	at = memchr(s, '@', n);
	return at != NULL && at > s && at < s + n - 1;
}

/*
 * A "!" size (6.4): 1*DIGIT [ "k" / "m" / "g" / "t" ], powers of two
 * (6.2); S (N bytes) is what follows the "!".  Saturates at UINT64_MAX.
 */
static bool
uri_size(const char *s, size_t n, uint64_t *out)
{
	static const char units[] = "kmgt";
	const char *u;
	uint64_t v = 0;
	unsigned shift = 0;
	size_t i;

	if (n > 0 && !is_digit(s[n - 1])) {
		u = strchr(units, to_lower((unsigned char)s[n - 1]));
		if (u == NULL || *u == '\0') {
			return false;
		}
		shift = 10 * (unsigned)(u - units + 1);
		n--;
	}
	if (n == 0) {
		return false;
	}
	for (i = 0; i < n; i++) {
		if (!is_digit(s[i])) {
			return false;
		}
		v = v > (UINT64_MAX - 9) / 10 ? UINT64_MAX :
		    v * 10 + (uint64_t)(s[i] - '0');
	}
	*out = v > (UINT64_MAX >> shift) ? UINT64_MAX : v << shift;
	return true;
}

/* One element of a rua=/ruf= list, S (N bytes, trimmed). */
static void
uri_item(struct pst *ps, struct urilist *l, const char *s, size_t n)
{
	char q[AG_LOG_QUOTE_SIZE];
	const char *bang = memchr(s, '!', n);
	size_t ulen = bang != NULL ? (size_t)(bang - s) : n, scheme = 0;
	uint64_t size = 0;
	bool mailto;

	if ((bang != NULL && !uri_size(bang + 1, n - ulen - 1, &size)) ||
	    !uri_valid(s, ulen, &scheme)) {
		(*l->bad)++;
		note(ps, "%s: bad URI \"%s\" skipped", l->tag, ag_log_quote(q,
		    sizeof(q), s, n));
		return;
	}
	mailto = word_eq(s, scheme, "mailto");
	if (mailto && !mailto_valid(s + scheme + 1, ulen - scheme - 1)) {
		(*l->bad)++;
		note(ps, "%s: mailto: URI without an address \"%s\" skipped",
		    l->tag, ag_log_quote(q, sizeof(q), s, n));
		return;
	}
	l->valid++;
	if (!mailto || *l->n == l->max || ulen >= AG_DMARC_URI_SIZE) {
		(*l->skipped)++;
		return;
	}
	memcpy(l->uri[*l->n], s, ulen);
	l->uri[*l->n][ulen] = '\0';
	l->size[*l->n] = size;
	(*l->n)++;
}

/* rua=/ruf= (6.3, 6.4): dmarc-uri *(*WSP "," *WSP dmarc-uri). */
static void
uri_list(struct pst *ps, struct urilist *l, const char *v, size_t n)
{
	const char *end = v + n, *comma, *item;
	size_t ilen;

	for (;;) {
		comma = memchr(v, ',', (size_t)(end - v));
		item = v;
		ilen = (size_t)((comma != NULL ? comma : end) - v);
		trim(&item, &ilen);
		uri_item(ps, l, item, ilen);
		if (comma == NULL) {
			break;
		}
		v = comma + 1;
	}
	if (l->valid == 0) {
		ps->out->ignored++;
	}
}

/* rua= (6.3): aggregate report URIs; a valid one rescues a bad p=. */
static void
tag_rua(struct pst *ps, const char *name, const char *v, size_t n)
{
	struct ag_dmarc_record *r = ps->out;
	struct urilist l = { "rua", &r->nrua, r->rua, r->rua_size,
		AG_DMARC_RUA_MAX, &r->rua_skipped, &r->rua_bad, 0 };

	uri_list(ps, &l, v, n);
	ps->rua_valid = l.valid;
}

/* ruf= (6.3): failure report URIs. */
static void
tag_ruf(struct pst *ps, const char *name, const char *v, size_t n)
{
	struct ag_dmarc_record *r = ps->out;
	struct urilist l = { "ruf", &r->nruf, r->ruf, r->ruf_size,
		AG_DMARC_RUF_MAX, &r->ruf_skipped, &r->ruf_bad, 0 };

	uri_list(ps, &l, v, n);
}

/* The tags of RFC 7489 6.3 and RFC 9091; v= is handled first. */
static const struct {
	const char *name;
	void (*fn)(struct pst *, const char *, const char *, size_t);
} tags[] = {
	{ "p", tag_p_sp },
	{ "sp", tag_p_sp },
	{ "np", tag_np },
	{ "pct", tag_pct },
	{ "adkim", tag_align },
	{ "aspf", tag_align },
	{ "rua", tag_rua },
	{ "ruf", tag_ruf },
	{ "ri", tag_ri },
	{ "fo", tag_fo },
	{ "rf", tag_rf },
};

/* Refuse NUL, control characters other than the white space, non-ASCII. */
static enum ag_dmarc_rec_status
check_bytes(struct pst *ps, const char *s, size_t len)
{
	size_t i;
	unsigned char c;

	for (i = 0; i < len; i++) {
		c = (unsigned char)s[i];
		if ((c < 0x20 && !is_ws(c)) || c >= 0x7f) {
			return fail(ps, "%s 0x%02x at offset %zu", c == 0 ?
			    "NUL byte" : c < 0x80 ? "control character" :
			    "non-ASCII byte", c, i);
		}
	}
	return AG_DMARC_REC_OK;
}

/* Remember tag name S (N bytes); a name seen before is fatal (DKIM 3.2). */
static enum ag_dmarc_rec_status
seen_tag(struct pst *ps, const char *s, size_t n)
{
	char q[AG_LOG_QUOTE_SIZE];
	size_t i;

	for (i = 0; i < ps->nseen; i++) {
		if (ps->seen[i].len == n &&
		    name_eq(ps->txt + ps->seen[i].off, s, n)) {
			return fail(ps, "duplicate tag \"%s\"", ag_log_quote(q,
			    sizeof(q), s, n));
		}
	}
	if (ps->nseen == AG_DMARC_TAGS_MAX) {
		return fail(ps, "more than %d tags", AG_DMARC_TAGS_MAX);
	}
	ps->seen[ps->nseen].off = (uint16_t)(s - ps->txt);
	ps->seen[ps->nseen].len = (uint16_t)n;
	ps->nseen++;
	return AG_DMARC_REC_OK;
}

/* One non-empty tag-spec S (N bytes, trimmed): name "=" value. */
static enum ag_dmarc_rec_status
one_tag(struct pst *ps, const char *s, size_t n)
{
	char q[AG_LOG_QUOTE_SIZE];
	const char *eq = memchr(s, '=', n), *name = s, *val;
	size_t nlen, vlen, i;
	enum ag_dmarc_rec_status st;

	if (eq == NULL) {
		return fail(ps, "tag \"%s\" has no \"=\"", ag_log_quote(q, sizeof(q),
		    s, n));
	}
	nlen = (size_t)(eq - s);
	trim(&name, &nlen);
	val = eq + 1;
	vlen = (size_t)(s + n - val);
	trim(&val, &vlen);
	for (i = 0; i < nlen; i++) {
		if (!is_alpha(name[i]) && (i == 0 || (!is_digit(name[i]) &&
		    name[i] != '_'))) {
			break;
		}
	}
	if (nlen == 0 || i < nlen) {
		return fail(ps, "bad tag name \"%s\"", ag_log_quote(q, sizeof(q),
		    name, nlen));
	}
	st = seen_tag(ps, name, nlen);
	if (st != AG_DMARC_REC_OK) {
		return st;
	}
	for (i = 0; i < sizeof(tags) / sizeof(tags[0]); i++) {
		if (word_eq(name, nlen, tags[i].name)) {
			tags[i].fn(ps, name, val, vlen);
			break;
		}
	}
	return AG_DMARC_REC_OK;
}

/* The tags after v=DMARC1; TXT[I] is ";" or I is LEN. */
static enum ag_dmarc_rec_status
tag_list(struct pst *ps, size_t i, size_t len)
{
	const char *seg, *semi;
	size_t slen;
	enum ag_dmarc_rec_status st;

	while (i < len) {
		i++;
		seg = ps->txt + i;
		semi = memchr(seg, ';', len - i);
		slen = semi != NULL ? (size_t)(semi - seg) : len - i;
		i += slen;
		trim(&seg, &slen);
		if (slen == 0) {
			continue;
		}
		st = one_tag(ps, seg, slen);
		if (st != AG_DMARC_REC_OK) {
			return st;
		}
	}
	return AG_DMARC_REC_OK;
}

/*
 * After the tags: defaults that follow other tags, and 6.6.3 step 6 for
 * a missing or bad p= or a bad sp=.
 */
static enum ag_dmarc_rec_status
resolve(struct pst *ps)
{
	struct ag_dmarc_record *r = ps->out;
	char q[AG_LOG_QUOTE_SIZE], why[AG_LOG_QUOTE_SIZE + 32];

	if (ps->p == T_OK && ps->sp != T_BAD) {
		if (!r->has_sp) {
			r->sp = r->p;
		}
		if (!r->has_np) {
			r->np = r->sp;
		}
		return AG_DMARC_REC_OK;
	}
	if (ps->p == T_ABSENT) {
		snprintf(why, sizeof(why), "no p= tag");
	} else {
		int s = ps->p == T_OK;

		snprintf(why, sizeof(why), "%s: bad policy \"%s\"", s ? "sp" :
		    "p", ag_log_quote(q, sizeof(q), ps->pol_val[s], ps->pol_len[s]));
	}
	if (ps->rua_valid == 0) {
		return fail(ps, "%s and no valid rua= URI: no policy (RFC 7489 "
		    "6.6.3)", why);
	}
	r->p = r->sp = r->np = AG_DMARC_P_NONE;
	r->has_sp = r->has_np = false;
	r->pct = AG_DMARC_PCT_DEFAULT;
	r->p_from_rua = true;
	say(ps->err, ps->errlen, "%s; read as p=none since rua= is valid "
	    "(RFC 7489 6.6.3)", why);
	return AG_DMARC_REC_OK;
}

/* Is this TXT record a DMARC record: first tag v=DMARC1? */
bool
ag_dmarc_record_is_dmarc(const char *txt, size_t len)
{
	size_t end;

	return txt != NULL && version_end(txt, len, &end);
}

/* Parse one joined TXT record into OUT. */
enum ag_dmarc_rec_status
ag_dmarc_record_parse(const char *txt, size_t len, struct ag_dmarc_record *out,
    char *err, size_t errlen)
{
	struct ag_dmarc_record scratch;
	struct pst ps;
	enum ag_dmarc_rec_status st;
	size_t pos, v;

	if (out == NULL) {
		out = &scratch;
	}
	rec_init(out);
	say(err, errlen, "%s", "");
	if (txt == NULL || !version_end(txt, len, &pos)) {
		say(err, errlen, "not a DMARC record (first tag not v=DMARC1)");
		return AG_DMARC_REC_NONE;
	}
	memset(&ps, 0, offsetof(struct pst, seen));
	ps.txt = txt;
	ps.out = out;
	ps.err = err;
	ps.errlen = errlen;
	if (len > AG_DMARC_RECORD_MAX) {
		return fail(&ps, "record of %zu bytes (at most %d)", len,
		    AG_DMARC_RECORD_MAX);
	}
	st = check_bytes(&ps, txt, len);
	for (v = 0; st == AG_DMARC_REC_OK && is_ws((unsigned char)txt[v]);
	    v++) {
		continue;
	}
	if (st == AG_DMARC_REC_OK) {
		st = seen_tag(&ps, txt + v, 1);
	}
	if (st == AG_DMARC_REC_OK) {
		st = tag_list(&ps, pos, len);
	}
	if (st == AG_DMARC_REC_OK) {
		st = resolve(&ps);
	}
	if (st != AG_DMARC_REC_OK) {
		rec_init(out);
	}
	return st;
}

/* Policy discovery at one name: exactly one v=DMARC1 record counts. */
enum ag_dmarc_rec_status
ag_dmarc_record_pick(const char *const *txts, const size_t *lens, size_t n,
    struct ag_dmarc_record *out, char *err, size_t errlen)
{
	size_t i, len, found = 0, which = 0, which_len = 0;

	for (i = 0; txts != NULL && i < n; i++) {
		if (txts[i] == NULL) {
			continue;
		}
		len = lens != NULL ? lens[i] : strlen(txts[i]);
		if (ag_dmarc_record_is_dmarc(txts[i], len)) {
			found++;
			which = i;
			which_len = len;
		}
	}
	if (found == 1) {
		return ag_dmarc_record_parse(txts[which], which_len, out, err,
		    errlen);
	}
	if (out != NULL) {
		rec_init(out);
	}
	if (found == 0) {
		say(err, errlen, "no v=DMARC1 record among %zu TXT record%s", n,
		    n == 1 ? "" : "s");
	} else {
		say(err, errlen, "%zu v=DMARC1 records: no policy (RFC 7489 "
		    "6.6.3: exactly one)", found);
	}
	return AG_DMARC_REC_NONE;
}

/* Name of a policy for logs and headers. */
const char *
ag_dmarc_policy_name(enum ag_dmarc_policy p)
{
	switch (p) {
	case AG_DMARC_P_NONE:
		return "none";
	case AG_DMARC_P_QUARANTINE:
		return "quarantine";
	case AG_DMARC_P_REJECT:
		return "reject";
	}
	return "unknown";
}

/* Name of a parse status for logs. */
const char *
ag_dmarc_rec_status_name(enum ag_dmarc_rec_status st)
{
	switch (st) {
	case AG_DMARC_REC_OK:
		return "ok";
	case AG_DMARC_REC_NONE:
		return "none";
	case AG_DMARC_REC_INVALID:
		return "invalid";
	}
	return "unknown";
}

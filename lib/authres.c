/*
 * authres.c - the Authentication-Results (RFC 8601) and Received-SPF
 * (RFC 7208 9.1) header values the milter inserts.
 *
 * A builder keeps each result as ready-rendered words ("spf=pass",
 * "reason=\"...\"", "smtp.mailfrom=user@example.com"); rendering joins the
 * words with a space, or folds with AG_HEADER_FOLD before a word that would
 * take its line past AG_HEADER_FOLD_AT.  A word is never split, so a
 * quoted-string or token longer than a line makes one long line.
 *
 * Values from the network go through safe_form() (controls, DEL and 8-bit
 * bytes become "\xHH", the length is capped) and are then written bare only
 * where the grammar allows, else quoted: see authres.h.
 *
 * ag_authres_parse_id() reads the authserv-id of an incoming header, so
 * that forged ones claiming ours can be removed: one pass over the value,
 * comments nested by a depth count, only OUT written and only within OUTSZ.
 *
 * Ownership: the builder owns copies of everything it is given; rendered
 * strings belong to the caller.  Thread safety: a builder is used by one
 * thread; there is no shared state.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "authres.h"

/* The field names' width on the first line: "Name: " (RFC 5322 2.2). */
#define AR_FIELD_WIDTH (sizeof("Authentication-Results: ") - 1)
#define SPF_FIELD_WIDTH (sizeof("Received-SPF: ") - 1)

/* Columns taken by AG_HEADER_FOLD's indent: what follows its "\n". */
#define FOLD_INDENT (sizeof(AG_HEADER_FOLD) - 2)

/* What a marked cut adds to a safe form. */
#define CUT_MARK "..."

/* A safe form: AG_AUTHRES_VALUE_MAX bytes, the cut mark and a NUL. */
#define SAFE_SIZE (AG_AUTHRES_VALUE_MAX + sizeof(CUT_MARK))

/* RFC 2045 5.1: tspecials, which a token may not hold. */
#define TSPECIALS "()<>@,;:\\\"/[]?="

/* RFC 5322 3.2.3: atext beyond letters and digits. */
#define ATEXT_PUNCT "!#$%&'*+-/=?^_`{|}~"

/* One result: its words in order; the first is "method=result". */
struct ar_result {
	char *word[AG_AUTHRES_MAX_PROPS + 2];
	size_t nword;
};

struct ag_authres {
	char *id;		/* rendered authserv-id */
	size_t budget;		/* upper bound on the rendered length */
	size_t nres;
	struct ar_result res[AG_AUTHRES_MAX_RESULTS];
};

/* A growing string; once an allocation fails it stays failed. */
struct sbuf {
	char *p;
	size_t len, cap;
	bool nomem;
};

/* How a safe value may be written bare. */
enum bare_form {
	BARE_TOKEN,	/* RFC 2045 token (authserv-id, value) */
	BARE_PVALUE,	/* token or [local-part] "@" domain-name */
	BARE_DOT_ATOM,	/* RFC 5322 dot-atom (Received-SPF) */
	BARE_NEVER	/* always a quoted-string (reason) */
};

/* Header folding state: the output and the current line's width. */
struct fold {
	struct sbuf sb;
	size_t col;
	bool started;
};

/* Make room for ADD more bytes and a NUL; false (and nomem) if not. */
static bool
sb_room(struct sbuf *sb, size_t add)
{
	size_t need, cap;
	char *p;

	if (sb->nomem) {
		return false;
	}
	if (add > SIZE_MAX - sb->len - 1) {
		sb->nomem = true;
		return false;
	}
	need = sb->len + add + 1;
	if (need <= sb->cap) {
		return true;
	}
	cap = sb->cap != 0 ? sb->cap : 64;
	while (cap < need) {
		cap = cap > SIZE_MAX / 2 ? need : cap * 2;
	}
	p = realloc(sb->p, cap);
	if (p == NULL) {
		sb->nomem = true;
		return false;
	}
	sb->p = p;
	sb->cap = cap;
	return true;
}

/* Append N bytes of S. */
static void
sb_putn(struct sbuf *sb, const char *s, size_t n)
{
	if (sb_room(sb, n)) {
		memcpy(sb->p + sb->len, s, n);
		sb->len += n;
		sb->p[sb->len] = '\0';
	}
}

/* Append the string S. */
static void
sb_puts(struct sbuf *sb, const char *s)
{
	sb_putn(sb, s, strlen(s));
}

/* Append one byte. */
static void
sb_putc(struct sbuf *sb, char c)
{
	sb_putn(sb, &c, 1);
}

/* The finished string, "" if nothing was put, or NULL after no memory. */
static char *
sb_take(struct sbuf *sb)
{
	if (!sb->nomem && sb->p == NULL) {
		sb_room(sb, 0);
		if (!sb->nomem) {
			sb->p[0] = '\0';
		}
	}
	if (sb->nomem) {
		free(sb->p);
		sb->p = NULL;
	}
	return sb->p;
}

/* An ASCII letter or digit (RFC 5321 Let-dig), whatever the locale. */
static bool
is_alnum(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	    (c >= '0' && c <= '9');
}

/* RFC 2045 5.1 token character: printable, not space, not a tspecial. */
static bool
is_token_char(unsigned char c)
{
	return c > 0x20 && c < 0x7f && strchr(TSPECIALS, c) == NULL;
}

/* RFC 5322 3.2.3 atext. */
static bool
is_atext(unsigned char c)
{
	return is_alnum(c) || (c != '\0' && strchr(ATEXT_PUNCT, c) != NULL);
}

/* RFC 8601 2.2 Keyword (RFC 5321 Ldh-str), starting with a letter or digit. */
static bool
is_keyword(const char *s)
{
	size_t i, n;

	if (s == NULL) {
		return false;
	}
	n = strlen(s);
	if (n == 0 || n > AG_AUTHRES_KEYWORD_MAX || !is_alnum(s[0]) ||
	    !is_alnum(s[n - 1])) {
		return false;
	}
	for (i = 0; i < n; i++) {
		if (!is_alnum(s[i]) && s[i] != '-') {
			return false;
		}
	}
	return true;
}

/* RFC 2045 5.1 token: one or more token characters. */
static bool
is_token(const char *s, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		if (!is_token_char(s[i])) {
			return false;
		}
	}
	return n > 0;
}

/* RFC 5322 3.2.3 dot-atom-text: 1*atext *("." 1*atext). */
static bool
is_dot_atom(const char *s, size_t n)
{
	size_t i;

	if (n == 0 || s[0] == '.' || s[n - 1] == '.') {
		return false;
	}
	for (i = 0; i < n; i++) {
		if (s[i] == '.' ? s[i - 1] == '.' : !is_atext(s[i])) {
			return false;
		}
	}
	return true;
}

/*
 * RFC 6376 3.5 domain-name as RFC 8601 uses it: sub-domain 1*("."
 * sub-domain), each sub-domain (RFC 5321) a Let-dig [Ldh-str].
 */
static bool
is_domain_name(const char *s, size_t n)
{
	size_t i, labels = 1;

	if (n == 0 || !is_alnum(s[0]) || !is_alnum(s[n - 1])) {
		return false;
	}
	for (i = 1; i < n; i++) {
		if (s[i] == '.') {
			if (!is_alnum(s[i - 1]) || !is_alnum(s[i + 1])) {
				return false;
			}
			labels++;
		} else if (!is_alnum(s[i]) && s[i] != '-') {
			return false;
		}
	}
	return labels >= 2;
}

/* RFC 8601 2.2 pvalue's [ [ local-part ] "@" ] domain-name, unquoted. */
static bool
is_bare_address(const char *s, size_t n)
{
	const char *at = memchr(s, '@', n);
	size_t local;

	if (at == NULL) {
		return false;
	}
	local = (size_t)(at - s);
	return (local == 0 || is_dot_atom(s, local)) &&
	    is_domain_name(at + 1, n - local - 1);
}

/*
 * The safe form of S into BUF (SAFE_SIZE bytes): printable ASCII as is,
 * any other byte as "\xHH"; cut with CUT_MARK before the form would pass
 * AG_AUTHRES_VALUE_MAX.  Returns its length.
 */
static size_t
safe_form(char *buf, const char *s)
{
	static const char hex[] = "0123456789abcdef";
	const unsigned char *p;
	size_t n = 0;

	for (p = (const unsigned char *)s; *p != '\0'; p++) {
		bool plain = *p >= 0x20 && *p < 0x7f;

		if (n + (plain ? 1 : 4) > AG_AUTHRES_VALUE_MAX) {
			memcpy(buf + n, CUT_MARK, sizeof(CUT_MARK) - 1);
			n += sizeof(CUT_MARK) - 1;
			break;
		}
		if (plain) {
			buf[n++] = (char)*p;
		} else {
			buf[n++] = '\\';
			buf[n++] = 'x';
			buf[n++] = hex[*p >> 4];
			buf[n++] = hex[*p & 0xf];
		}
	}
	buf[n] = '\0';
	return n;
}

/* Append N bytes of S, a backslash before each byte found in SPECIALS. */
static void
put_escaped(struct sbuf *sb, const char *s, size_t n, const char *specials)
{
	size_t i;

	for (i = 0; i < n; i++) {
		if (strchr(specials, s[i]) != NULL) {
			sb_putc(sb, '\\');
		}
		sb_putc(sb, s[i]);
	}
}

/* Append the network value S: bare if FORM allows, else quoted. */
static void
put_value(struct sbuf *sb, const char *s, enum bare_form form)
{
	char safe[SAFE_SIZE];
	size_t n = safe_form(safe, s);
	bool bare;

	switch (form) {
	case BARE_TOKEN:
		bare = is_token(safe, n);
		break;
	case BARE_PVALUE:
		bare = is_token(safe, n) || is_bare_address(safe, n);
		break;
	case BARE_DOT_ATOM:
		bare = is_dot_atom(safe, n);
		break;
	default:
		bare = false;
		break;
	}
	if (bare) {
		sb_putn(sb, safe, n);
		return;
	}
	sb_putc(sb, '"');
	put_escaped(sb, safe, n, "\"\\");	/* RFC 5322 3.2.4 qtext */
	sb_putc(sb, '"');
}

/*
 * Put word W and SUFFIX after a space, or after a fold if the line would
 * pass AG_HEADER_FOLD_AT; KEEP > 0 is the width of the next word, which
 * must fit on the same line too (a method stays with its first property).
 */
static void
fold_put(struct fold *f, const char *w, const char *suffix, size_t keep)
{
	size_t n = strlen(w) + strlen(suffix);

	if (f->started) {
		if (f->col + 1 + n + (keep > 0 ? 1 + keep : 0) >
		    AG_HEADER_FOLD_AT) {
			sb_puts(&f->sb, AG_HEADER_FOLD);
			f->col = FOLD_INDENT;
		} else {
			sb_putc(&f->sb, ' ');
			f->col++;
		}
	}
	sb_puts(&f->sb, w);
	sb_puts(&f->sb, suffix);
	f->col += n;
	f->started = true;
}

/* A builder with the authserv-id rendered once; see authres.h. */
struct ag_authres *
ag_authres_new(const char *authserv_id)
{
	struct ag_authres *ar;
	struct sbuf sb = { 0 };

	if (authserv_id == NULL) {
		return NULL;
	}
	ar = calloc(1, sizeof(*ar));
	if (ar == NULL) {
		return NULL;
	}
	put_value(&sb, authserv_id, BARE_TOKEN);
	ar->id = sb_take(&sb);
	if (ar->id == NULL) {
		free(ar);
		return NULL;
	}
	ar->budget = strlen(ar->id) + sizeof("; none");
	return ar;
}

/* Free the words of R. */
static void
result_clear(struct ar_result *r)
{
	size_t i;

	for (i = 0; i < r->nword; i++) {
		free(r->word[i]);
	}
	r->nword = 0;
}

/* Free a builder and its results; NULL is fine. */
void
ag_authres_free(struct ag_authres *ar)
{
	size_t i;

	if (ar == NULL) {
		return;
	}
	for (i = 0; i < ar->nres; i++) {
		result_clear(&ar->res[i]);
	}
	free(ar->id);
	free(ar);
}

/* Check the names of an ag_authres_add call (not the values). */
static ag_status
add_check(const struct ag_authres *ar, const char *method, const char *result,
    const struct ag_authres_prop *props, size_t nprops)
{
	size_t i;

	if (ar == NULL || ar->nres >= AG_AUTHRES_MAX_RESULTS ||
	    !is_keyword(method) || !is_keyword(result) ||
	    nprops > AG_AUTHRES_MAX_PROPS || (nprops > 0 && props == NULL)) {
		return AG_INVALID;
	}
	for (i = 0; i < nprops; i++) {
		if (!is_keyword(props[i].ptype) ||
		    !is_keyword(props[i].property) || props[i].value == NULL) {
			return AG_INVALID;
		}
	}
	return AG_OK;
}

/* Render the words of one result into R; false on no memory. */
static bool
add_words(struct ar_result *r, const char *method, const char *result,
    const char *reason, const struct ag_authres_prop *props, size_t nprops)
{
	struct sbuf sb = { 0 };
	size_t i;

	sb_puts(&sb, method);
	sb_putc(&sb, '=');
	sb_puts(&sb, result);
	if ((r->word[r->nword] = sb_take(&sb)) == NULL) {
		return false;
	}
	r->nword++;
	if (reason != NULL && *reason != '\0') {
		memset(&sb, 0, sizeof(sb));
		sb_puts(&sb, "reason=");
		put_value(&sb, reason, BARE_NEVER);
		if ((r->word[r->nword] = sb_take(&sb)) == NULL) {
			return false;
		}
		r->nword++;
	}
	for (i = 0; i < nprops; i++) {
		memset(&sb, 0, sizeof(sb));
		sb_puts(&sb, props[i].ptype);
		sb_putc(&sb, '.');
		sb_puts(&sb, props[i].property);
		sb_putc(&sb, '=');
		put_value(&sb, props[i].value, BARE_PVALUE);
		if ((r->word[r->nword] = sb_take(&sb)) == NULL) {
			return false;
		}
		r->nword++;
	}
	return true;
}

/* Check, render and keep one result; all or nothing. */
ag_status
ag_authres_add(struct ag_authres *ar, const char *method, const char *result,
    const char *reason, const struct ag_authres_prop *props, size_t nprops)
{
	struct ar_result r = { { NULL }, 0 };
	size_t i, budget;
	ag_status st;

	st = add_check(ar, method, result, props, nprops);
	if (st != AG_OK) {
		return st;
	}
	if (!add_words(&r, method, result, reason, props, nprops)) {
		result_clear(&r);
		return AG_NOMEM;
	}
	/* Each word: itself, a separator of at most a fold, and a ";". */
	budget = ar->budget;
	for (i = 0; i < r.nword; i++) {
		budget += strlen(r.word[i]) + sizeof(AG_HEADER_FOLD);
	}
	if (budget > AG_AUTHRES_HEADER_MAX) {
		result_clear(&r);
		return AG_INVALID;
	}
	ar->budget = budget;
	ar->res[ar->nres++] = r;
	return AG_OK;
}

/* Join the kept words into the folded header value. */
char *
ag_authres_render(const struct ag_authres *ar)
{
	struct fold f = { { NULL, 0, 0, false }, AR_FIELD_WIDTH, false };
	size_t i, j;

	if (ar == NULL) {
		return NULL;
	}
	if (ar->nres == 0) {
		sb_puts(&f.sb, ar->id);
		sb_puts(&f.sb, "; none");	/* RFC 8601 2.2 no-result */
		return sb_take(&f.sb);
	}
	fold_put(&f, ar->id, ";", 0);
	for (i = 0; i < ar->nres; i++) {
		const struct ar_result *r = &ar->res[i];
		bool more = i + 1 < ar->nres;	/* then ";" ends it */

		for (j = 0; j < r->nword; j++) {
			bool end = j + 1 == r->nword;
			size_t keep = 0;

			if (j == 0 && r->nword > 1) {
				keep = strlen(r->word[1]) +
				    (r->nword == 2 && more ? 1 : 0);
			}
			fold_put(&f, r->word[j], end && more ? ";" : "", keep);
		}
	}
	return sb_take(&f.sb);
}

/* RFC 7208 2.6: the results a Received-SPF header may carry. */
static bool
is_spf_result(const char *s)
{
	static const char *const results[] = { "pass", "fail", "softfail",
		"neutral", "none", "temperror", "permerror" };
	size_t i;

	for (i = 0; s != NULL && i < sizeof(results) / sizeof(results[0]);
	    i++) {
		if (strcasecmp(s, results[i]) == 0) {
			return true;
		}
	}
	return false;
}

/*
 * Put the comment C as "(word word ...)", folding between its words (runs
 * of spaces become one separator), '(' ')' '\' escaped (RFC 5322 3.2.2).
 */
static void
spf_comment(struct fold *f, const char *c)
{
	char safe[SAFE_SIZE];
	struct sbuf w;
	size_t n, i = 0, end;
	bool first = true;

	n = safe_form(safe, c);
	while (i < n && safe[i] == ' ') {
		i++;
	}
	while (i < n) {
		for (end = i; end < n && safe[end] != ' '; end++) {
		}
		memset(&w, 0, sizeof(w));
		if (first) {
			sb_putc(&w, '(');
		}
		put_escaped(&w, safe + i, end - i, "()\\");
		for (i = end; i < n && safe[i] == ' '; i++) {
		}
		if (i == n) {
			sb_putc(&w, ')');
		}
		if (!w.nomem) {
			fold_put(f, w.p, "", 0);
		}
		f->sb.nomem |= w.nomem;
		free(w.p);
		first = false;
	}
}

/* RESULT (COMMENT) key=value; ... in RFC 7208 9.1 order, folded. */
char *
ag_received_spf_render(const struct ag_received_spf *r)
{
	struct fold f = { { NULL, 0, 0, false }, SPF_FIELD_WIDTH, false };
	const struct {
		const char *key, *value;
	} kv[] = {
		{ "client-ip", r != NULL ? r->client_ip : NULL },
		{ "envelope-from", r != NULL ? r->envelope_from : NULL },
		{ "helo", r != NULL ? r->helo : NULL },
		{ "receiver", r != NULL ? r->receiver : NULL },
		{ "identity", r != NULL ? r->identity : NULL },
		{ "mechanism", r != NULL ? r->mechanism : NULL },
		{ "problem", r != NULL ? r->problem : NULL },
	};
	size_t i, last = 0;
	struct sbuf w;

	if (r == NULL || !is_spf_result(r->result)) {
		return NULL;
	}
	fold_put(&f, r->result, "", 0);
	if (r->comment != NULL) {
		spf_comment(&f, r->comment);
	}
	for (i = 0; i < sizeof(kv) / sizeof(kv[0]); i++) {
		last = kv[i].value != NULL ? i : last;
	}
	for (i = 0; i < sizeof(kv) / sizeof(kv[0]); i++) {
		if (kv[i].value == NULL) {
			continue;
		}
		memset(&w, 0, sizeof(w));
		sb_puts(&w, kv[i].key);
		sb_putc(&w, '=');
		put_value(&w, kv[i].value, BARE_DOT_ATOM);
		if (!w.nomem) {
			fold_put(&f, w.p, i < last ? ";" : "", 0);
		}
		f.sb.nomem |= w.nomem;
		free(w.p);
	}
	return sb_take(&f.sb);
}

/*
 * Reading the authserv-id of an incoming header (ag_authres_parse_id).
 *
 * Only the id is read, never the rest: a header whose results are
 * malformed or huge must still be recognised as claiming our id, or a
 * forged one survives the removal (OpenDKIM #434).  One pass, no
 * recursion, no counts that index arrays (OpenDMARC #441); the only write
 * is into OUT, checked against OUTSZ byte by byte.
 */

/* RFC 5234 WSP, and CR and LF: outside a quoted-string they only fold. */
static bool
is_fws(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/*
 * Skip RFC 5322 3.2.2 CFWS at P: white space, folds, and comments, which
 * nest (a depth count) and hold quoted-pairs.  The first byte after it, or
 * NULL when the value ends inside a comment or a quoted-pair.
 */
static const char *
skip_cfws(const char *p)
{
	size_t depth = 0;

	for (; *p != '\0'; p++) {
		if (depth > 0 && *p == '\\') {
			p++;	/* the quoted-pair's second byte */
			if (*p == '\0') {
				return NULL;
			}
		} else if (*p == '(') {
			depth++;
		} else if (depth > 0 && *p == ')') {
			depth--;
		} else if (depth == 0 && !is_fws(*p)) {
			return p;
		}
	}
	return depth == 0 ? p : NULL;
}

/*
 * Copy byte C to OUT as its Nth byte; false, with OUT holding the cut id,
 * when it does not fit before the NUL.
 */
static bool
id_put(char *out, size_t outsz, size_t *n, char c)
{
	if (*n + 1 >= outsz) {
		out[*n] = '\0';
		return false;
	}
	out[(*n)++] = c;
	return true;
}

/*
 * The content of the quoted-string whose '"' is just before P (RFC 5322
 * 3.2.4): quoted-pairs unescaped, CR and LF dropped (the FWS inside is
 * unfolded), any other byte as it is (RFC 6532 allows UTF-8 there).
 */
static ag_status
read_quoted(const char *p, char *out, size_t outsz)
{
	size_t n = 0;

	for (; *p != '"'; p++) {
		if (*p == '\\') {
			p++;
		}
		if (*p == '\0') {
			out[0] = '\0';
			return AG_INVALID;	/* unterminated */
		}
		if (*p != '\r' && *p != '\n' && !id_put(out, outsz, &n, *p)) {
			return AG_INVALID;	/* longer than any id of ours */
		}
	}
	out[n] = '\0';
	return n > 0 ? AG_OK : AG_INVALID;
}

/* The RFC 2045 token at P, up to the first byte that is not a token's. */
static ag_status
read_token(const char *p, char *out, size_t outsz)
{
	size_t n = 0;

	for (; is_token_char((unsigned char)*p); p++) {
		if (!id_put(out, outsz, &n, *p)) {
			return AG_INVALID;
		}
	}
	out[n] = '\0';
	return n > 0 ? AG_OK : AG_INVALID;
}

/* The authserv-id at the start of a header value; see authres.h. */
ag_status
ag_authres_parse_id(const char *value, char *out, size_t outsz)
{
	const char *p;

	if (out == NULL || outsz == 0) {
		return AG_INVALID;
	}
	out[0] = '\0';
	if (value == NULL || (p = skip_cfws(value)) == NULL) {
		return AG_INVALID;
	}
	if (*p == '"') {
		return read_quoted(p + 1, out, outsz);
	}
	return read_token(p, out, outsz);
}

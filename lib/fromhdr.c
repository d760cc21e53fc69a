/*
 * fromhdr.c - the RFC5322.From parser for DMARC (RFC 7489 section 6.6.1).
 *
 * A lexer turns the value into tokens (atoms, quoted-strings, domain
 * literals, single special bytes), skipping CFWS; a small parser over the
 * tokens counts the mailboxes and keeps the first one.  The grammar, the
 * statuses and the choices made are described in fromhdr.h.
 *
 * Ownership: nothing is allocated; OUT is the caller's.  Thread-safe: no
 * state.
 */
#include "fromhdr.h"

#include <stdbool.h>
#include <string.h>

enum tok_type {
	TOK_END,	/* end of the value */
	TOK_ERROR,	/* unclosed quote, comment or literal; deep comment */
	TOK_ATOM,	/* run of atext and 8-bit bytes (RFC 5322 3.2.3) */
	TOK_QSTRING,	/* "...", quotes included (RFC 5322 3.2.4) */
	TOK_LITERAL,	/* [...], brackets included (RFC 5322 3.4.1) */
	TOK_CHAR	/* any other single byte: specials, controls */
};

struct tok {
	enum tok_type type;
	unsigned char ch;		/* the byte of a TOK_CHAR */
	const unsigned char *start;	/* the text of the token */
	size_t len;
};

/* Where a domain stands decides what ends it (see fromhdr.h). */
enum dom_ctx {
	CTX_LIST,	/* bare addr-spec in the top-level list */
	CTX_GROUP,	/* bare addr-spec in a group: ';' ends it too */
	CTX_ANGLE	/* inside "<...>" */
};

/* The local part as it is copied for the log, cut at AG_ADDR_LOCAL_MAX. */
struct local_buf {
	char text[AG_ADDR_LOCAL_MAX + 1];
	size_t n;
};

/* A run of words and dots: a phrase or a local part, not known yet. */
struct words {
	struct local_buf local;
	size_t count;		/* tokens in the run */
	bool first_word;	/* starts with a word (a phrase must) */
	bool adjacent;		/* two words side by side: a phrase */
};

struct fparse {
	const unsigned char *p, *end;	/* the unread rest */
	struct tok tok;			/* the current token */
	bool error;			/* the answer is SYNTAX */
	size_t mailboxes;		/* mailboxes seen so far */
	bool first_ok;			/* the first has a good domain */
	struct ag_from first;		/* the first, if first_ok */
};

/* RFC 5322 3.2.3 atext, plus 8-bit bytes (RFC 6532 3.2, Latin-1 names). */
static bool
is_atext(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	    (c >= '0' && c <= '9') || c >= 0x80 ||
	    (c != '\0' && strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL);
}

/* White space: SP, HTAB, and the CR and LF of folds (checked beforehand). */
static bool
is_space(unsigned char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/*
 * No NUL, and every CR and LF part of a fold: CR only before LF, LF only
 * before SP or HTAB (RFC 5322 3.2.2; a bare LF fold as milters see them).
 */
static bool
value_lines_ok(const unsigned char *s, size_t len)
{
	size_t i;

	for (i = 0; i < len; i++) {
		if (s[i] == '\0') {
			return false;
		}
		if (s[i] == '\r' && (i + 1 == len || s[i + 1] != '\n')) {
			return false;
		}
		if (s[i] == '\n' &&
		    (i + 1 == len || (s[i + 1] != ' ' && s[i + 1] != '\t'))) {
			return false;
		}
	}
	return true;
}

/*
 * Skip the comment at P (which is '('), nesting counted, not recursed.
 * False when it is unterminated or nested too deep.
 */
static bool
skip_comment(struct fparse *fp)
{
	unsigned depth = 0;
	unsigned char c;

	do {
		if (fp->p == fp->end) {
			return false;
		}
		c = *fp->p++;
		if (c == '\\') {
			if (fp->p == fp->end) {
				return false;
			}
			fp->p++;
		} else if (c == '(') {
			if (++depth > AG_FROM_COMMENT_DEPTH_MAX) {
				return false;
			}
		} else if (c == ')') {
			depth--;
		}
	} while (depth > 0);
	return true;
}

/*
 * Skip from P (the opening byte) to just past the unescaped CLOSE; false
 * if there is none.  Quoted-pairs are honoured (RFC 5322 3.2.1, 4.4).
 */
static bool
skip_quoted(struct fparse *fp, unsigned char close)
{
	for (fp->p++; fp->p < fp->end; fp->p++) {
		if (*fp->p == close) {
			fp->p++;
			return true;
		}
		if (*fp->p == '\\' && ++fp->p == fp->end) {
			return false;
		}
	}
	return false;
}

/* Make the current token TOK_ERROR and the answer AG_FROM_SYNTAX. */
static void
lex_fail(struct fparse *fp)
{
	fp->error = true;
	fp->tok.type = TOK_ERROR;
}

/* Skip CFWS (RFC 5322 3.2.2) at P; false on a bad comment. */
static bool
skip_cfws(struct fparse *fp)
{
	for (;;) {
		while (fp->p < fp->end && is_space(*fp->p)) {
			fp->p++;
		}
		if (fp->p == fp->end || *fp->p != '(') {
			return true;
		}
		if (!skip_comment(fp)) {
			return false;
		}
	}
}

/* Read the next token into FP->tok; after an error, TOK_ERROR for ever. */
static void
lex_next(struct fparse *fp)
{
	struct tok *t = &fp->tok;
	unsigned char c;

	if (fp->error || !skip_cfws(fp)) {
		lex_fail(fp);
		return;
	}
	t->start = fp->p;
	t->type = TOK_END;
	if (fp->p == fp->end) {
		t->len = 0;
		return;
	}
	c = *fp->p;
	if (is_atext(c)) {
		while (fp->p < fp->end && is_atext(*fp->p)) {
			fp->p++;
		}
		t->type = TOK_ATOM;
	} else if (c == '"' || c == '[') {
		if (!skip_quoted(fp, c == '"' ? '"' : ']')) {
			lex_fail(fp);
			return;
		}
		t->type = c == '"' ? TOK_QSTRING : TOK_LITERAL;
	} else {
		fp->p++;
		t->type = TOK_CHAR;
		t->ch = c;
	}
	t->len = (size_t)(fp->p - t->start);
}

/* The current token is the special byte C. */
static bool
tok_is(const struct fparse *fp, unsigned char c)
{
	return fp->tok.type == TOK_CHAR && fp->tok.ch == c;
}

/* Append byte C to the log copy of the local part, cutting at the limit. */
static void
local_add(struct local_buf *b, unsigned char c)
{
	if (b->n < AG_ADDR_LOCAL_MAX) {
		b->text[b->n++] = (char)c;
	}
}

/* Append the text of word T: an atom as is, a quoted-string unquoted. */
static void
local_add_word(struct local_buf *b, const struct tok *t)
{
	const unsigned char *s = t->start, *e = t->start + t->len;

	if (t->type == TOK_ATOM) {
		for (; s < e && b->n < AG_ADDR_LOCAL_MAX; s++) {
			local_add(b, *s);
		}
		return;
	}
	/* Between the quotes; a quoted-pair is never cut by the closing one. */
	for (s++, e--; s < e && b->n < AG_ADDR_LOCAL_MAX; s++) {
		if (*s == '\\') {
			s++;
		}
		/* Unfolding removes the CRLF of a fold (RFC 5322 3.2.2). */
		if (*s != '\r' && *s != '\n') {
			local_add(b, *s);
		}
	}
}

/* Read a run of words and dots: a display name or a local part. */
static void
read_words(struct fparse *fp, struct words *w)
{
	bool word, prev_word = false;

	memset(w, 0, sizeof(*w));
	for (;;) {
		if (fp->tok.type == TOK_ATOM || fp->tok.type == TOK_QSTRING) {
			word = true;
			local_add_word(&w->local, &fp->tok);
		} else if (tok_is(fp, '.')) {
			word = false;
			local_add(&w->local, '.');
		} else {
			break;
		}
		if (w->count == 0) {
			w->first_word = word;
		}
		if (word && prev_word) {
			w->adjacent = true;
		}
		prev_word = word;
		w->count++;
		lex_next(fp);
	}
}

/* True when the current token ends a domain standing in CTX. */
static bool
domain_end(const struct fparse *fp, enum dom_ctx ctx)
{
	if (fp->tok.type == TOK_END || fp->tok.type == TOK_ERROR) {
		return true;
	}
	return tok_is(fp, ',') || tok_is(fp, '<') || tok_is(fp, '>') ||
	    (ctx == CTX_GROUP && tok_is(fp, ';'));
}

/*
 * Read the domain after '@' up to the token that ends it in CTX, and
 * normalize it into OUT (AG_ADDR_DOMAIN_MAX + 1 bytes).  False when it is
 * not a domain name (OUT is then empty).
 */
static bool
read_domain(struct fparse *fp, enum dom_ctx ctx, char *out)
{
	char text[AG_ADDR_DOMAIN_MAX + 1];
	size_t n = 0;
	bool bad = false, prev_atom = false;

	for (; !domain_end(fp, ctx); lex_next(fp)) {
		if (fp->tok.type == TOK_ATOM) {
			/* Lexed apart, so CFWS stood between: "exa mple". */
			bad |= prev_atom;
			bad |= fp->tok.len >= sizeof(text) - n;
			if (!bad) {
				memcpy(text + n, fp->tok.start, fp->tok.len);
				n += fp->tok.len;
			}
			prev_atom = true;
		} else if (tok_is(fp, '.')) {
			bad |= n + 1 >= sizeof(text);
			if (!bad) {
				text[n++] = '.';
			}
			prev_atom = false;
		} else {
			/* A literal, a quoted-string or another special. */
			bad = true;
			prev_atom = false;
		}
	}
	text[n] = '\0';
	if (bad || ag_domain_normalize(text, out, AG_ADDR_DOMAIN_MAX + 1) !=
	    AG_OK) {
		out[0] = '\0';
		return false;
	}
	return true;
}

/* Count a mailbox; keep the first, with DOMAIN NULL when it is bad. */
static void
mailbox_add(struct fparse *fp, const struct local_buf *local,
    const char *domain)
{
	if (fp->error || ++fp->mailboxes > 1) {
		return;
	}
	fp->first_ok = domain != NULL;
	if (domain != NULL) {
		memcpy(fp->first.local, local->text, local->n);
		fp->first.local[local->n] = '\0';
		memcpy(fp->first.domain, domain, strlen(domain) + 1);
	}
}

/*
 * Skip an obs-route (RFC 5322 4.4 obs-domain-list and ':') from the
 * current token; false when it is malformed.  The hops are dropped
 * unchecked, as RFC 5322 4.4 says they are to be ignored.
 */
static bool
skip_route(struct fparse *fp)
{
	enum { R_SEP, R_AT, R_DOMAIN } state = R_SEP;
	bool hop = false, dom_tok;

	for (;; lex_next(fp)) {
		dom_tok = fp->tok.type == TOK_ATOM ||
		    fp->tok.type == TOK_LITERAL || tok_is(fp, '.');
		if (state == R_AT) {
			if (!dom_tok) {
				return false;
			}
			state = R_DOMAIN;
			hop = true;
		} else if (tok_is(fp, ':') && hop) {
			lex_next(fp);
			return true;
		} else if (tok_is(fp, ',')) {
			state = R_SEP;
		} else if (tok_is(fp, '@') && state == R_SEP) {
			state = R_AT;
		} else if (!(dom_tok && state == R_DOMAIN)) {
			return false;
		}
	}
}

/* An angle-addr from its '<': [obs-route] addr-spec '>'. */
static void
parse_angle(struct fparse *fp)
{
	char domain[AG_ADDR_DOMAIN_MAX + 1];
	struct words w;
	bool ok;

	lex_next(fp);
	if ((tok_is(fp, '@') || tok_is(fp, ',')) && !skip_route(fp)) {
		fp->error = true;
		return;
	}
	/* "<>" and "<alice>" are no mailboxes. */
	read_words(fp, &w);
	if (w.count == 0 || w.adjacent || !tok_is(fp, '@')) {
		fp->error = true;
		return;
	}
	lex_next(fp);
	ok = read_domain(fp, CTX_ANGLE, domain);
	if (!tok_is(fp, '>')) {
		fp->error = true;
		return;
	}
	lex_next(fp);
	mailbox_add(fp, &w.local, ok ? domain : NULL);
}

static void parse_list(struct fparse *fp, bool in_group);

/* One member of a list: addr-spec, [phrase] angle-addr, or a group. */
static void
parse_member(struct fparse *fp, bool in_group)
{
	char domain[AG_ADDR_DOMAIN_MAX + 1];
	struct words w;
	bool ok;

	read_words(fp, &w);
	if (tok_is(fp, '@')) {
		if (w.count == 0 || w.adjacent) {
			fp->error = true;
			return;
		}
		lex_next(fp);
		ok = read_domain(fp, in_group ? CTX_GROUP : CTX_LIST, domain);
		mailbox_add(fp, &w.local, ok ? domain : NULL);
		return;
	}
	/* Otherwise the run is a display name: a phrase, or nothing. */
	if (w.count > 0 && !w.first_word) {
		fp->error = true;
		return;
	}
	if (tok_is(fp, '<')) {
		parse_angle(fp);
		return;
	}
	if (tok_is(fp, ':') && w.count > 0 && !in_group) {
		lex_next(fp);
		parse_list(fp, true);
		if (!tok_is(fp, ';')) {
			fp->error = true;
			return;
		}
		lex_next(fp);
		return;
	}
	fp->error = true;
}

/*
 * A list of members separated by commas, empty ones allowed (RFC 5322
 * 4.4 obs-mbox-list); in a group it ends at ';', which is left current.
 */
static void
parse_list(struct fparse *fp, bool in_group)
{
	for (;;) {
		if (fp->error) {
			return;
		}
		if (tok_is(fp, ',')) {
			lex_next(fp);
			continue;
		}
		if (fp->tok.type == TOK_END) {
			fp->error = in_group;
			return;
		}
		if (in_group && tok_is(fp, ';')) {
			return;
		}
		parse_member(fp, in_group);
		if (!fp->error && !tok_is(fp, ',') &&
		    fp->tok.type != TOK_END && !(in_group && tok_is(fp, ';'))) {
			fp->error = true;
		}
	}
}

/* Parse the value of one From header into OUT. */
enum ag_from_status
ag_from_parse(const char *value, size_t len, struct ag_from *out)
{
	struct fparse fp;
	enum ag_from_status st;

	if (out != NULL) {
		memset(out, 0, sizeof(*out));
	}
	if (value == NULL) {
		return AG_FROM_SYNTAX;
	}
	memset(&fp, 0, sizeof(fp));
	fp.p = (const unsigned char *)value;
	fp.end = fp.p + len;
	if (!value_lines_ok(fp.p, len)) {
		return AG_FROM_SYNTAX;
	}
	lex_next(&fp);
	parse_list(&fp, false);
	if (fp.error) {
		st = AG_FROM_SYNTAX;
	} else if (fp.mailboxes == 0) {
		st = AG_FROM_NONE;
	} else if (fp.mailboxes > 1) {
		st = AG_FROM_MULTIPLE;
	} else if (!fp.first_ok) {
		st = AG_FROM_BAD_DOMAIN;
	} else {
		st = AG_FROM_OK;
		if (out != NULL) {
			*out = fp.first;
		}
	}
	return st;
}

/* Short lower-case name of a status, for logs. */
const char *
ag_from_status_name(enum ag_from_status s)
{
	switch (s) {
	case AG_FROM_OK:
		return "ok";
	case AG_FROM_NONE:
		return "none";
	case AG_FROM_MULTIPLE:
		return "multiple";
	case AG_FROM_BAD_DOMAIN:
		return "bad-domain";
	case AG_FROM_SYNTAX:
		return "syntax";
	}
	return "unknown";
}

/*
 * dkimsign.c - streaming DKIM signing (RFC 6376, RFC 8463) with OpenSSL.
 *
 * Keys (lib/dkimkey.c) are parsed once, when the signing table is loaded,
 * into an EVP_PKEY that every message borrows (a reference).  libopendkim
 * is not used for signing: its dkim_sign() takes the key as PEM text and
 * parses it again for every message, which with OpenSSL 3.0 costs more
 * than an RSA-2048 signature (tests/bench/README.md), and 2.11.0 leaks an
 * Ed25519 key per signature.  What it did here is small and exactly
 * specified: canonicalize, hash, build the tag list, sign one digest.
 *
 * A message.  Header fields are kept as "Name:value" (the raw value, bare
 * LF made CRLF by ag_dkim_field(), as lib/dkim.c verifies them) until the
 * end of the headers.  There each signature chooses its fields: every
 * field whose name is in its h= list, in message order, and From once
 * more (over-signed: a From added later breaks the signature).  h= names
 * them in that order; each name is hashed as a verifier selects it
 * (RFC 6376 5.4.2: the last unused instance of the name, from the
 * bottom), and an over-signed name with no instance left hashes nothing.
 * The fields are then canonicalized into the signature's header digest
 * and let go.  The body streams through one canonicalizer per
 * canonicalization in use (two signatures of the same kind share it) into
 * a SHA-256 digest; nothing of it is held.
 *
 * At the end of the message each signature's field is built, folded at
 * 78 columns ("DKIM-Signature: " counted on the first line), up to and
 * including "b=": that text is canonicalized as the last field hashed
 * (without its CRLF, RFC 6376 3.7), the digest signed (RSA: PKCS #1 v1.5
 * over SHA-256's DigestInfo; Ed25519: PureEdDSA over the 32 bytes of the
 * SHA-256 digest, RFC 8463 3), and the base64 signature appended, folded
 * anywhere (white space in b= is not hashed).  The field is hashed with
 * exactly one space after the colon, as the session inserts it.
 *
 * Thread safety: see dkimsign.h.  An EVP_PKEY is only read here.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>

#include "dkim.h"
#include "dkimsign.h"
#include "dkimsign_int.h"
#include "log.h"

#define seterr ag_sign_seterr
#define printable ag_sign_printable

/* Bounds on the input: one field is bounded by ag_dkim_field() (1 MB);
 * all the header fields together, and their number, here. */
#define AG_SIGN_HDRS_MAX (8ULL * 1024 * 1024)
#define AG_SIGN_FIELDS_MAX 10000
/* Fields one signature names in h= (a name counts once per instance). */
#define AG_SIGN_H_ENTRIES_MAX 1000
#define AG_SIGN_HLIST_MAX 1000		/* bytes of an h= list given */
#define AG_SIGN_NAME_MAX 253		/* RFC 1035 2.3.4: s._domainkey.d */
#define AG_SIGN_LABEL_MAX 63		/* RFC 1035 2.3.4 */
#define AG_SIGN_FOLD 78			/* RFC 5322 2.1.1: line length */
#define AG_SIGN_FIRST_COL 16		/* "DKIM-Signature: " */
#define AG_SIGN_TAB_COL 8		/* a folded line starts with a tab */
#define AG_SIGN_SIG_MAX 1024		/* bytes of an RSA-8192 signature */
#define AG_SIGN_DIGEST 32		/* SHA-256 */

/*
 * The default h= list: RFC 6376 5.4.1 (From, Reply-To, Subject, Date, To,
 * Cc, Resent-*, In-Reply-To, References, List-*), the MIME fields that
 * change how the body is read (MIME-Version, Content-*), Message-ID and
 * Sender, and List-Unsubscribe-Post, which RFC 8058 4 requires signed.
 */
static const char *const default_hdrs[] = {
	"From", "Reply-To", "Subject", "Date", "To", "Cc",
	"Resent-Date", "Resent-From", "Resent-Sender", "Resent-To",
	"Resent-Cc", "Resent-Message-ID", "In-Reply-To", "References",
	"List-Id", "List-Help", "List-Unsubscribe", "List-Subscribe",
	"List-Post", "List-Owner", "List-Archive", "List-Unsubscribe-Post",
	"Message-ID", "Sender", "MIME-Version", "Content-Type",
	"Content-Transfer-Encoding", "Content-ID", "Content-Description",
	NULL
};

struct ag_signer {
	EVP_MD *sha256;		/* fetched once: no lookup per message */
};

/* An h= list read into names (pointing into STORE, or default_hdrs). */
struct hlist {
	const char *names[AG_SIGN_MAX_HNAMES + 2];	/* NULL-terminated */
	char store[AG_SIGN_HLIST_MAX + 1];
};

/* Bytes on their way into a digest, in blocks. */
struct sink {
	EVP_MD_CTX *ctx;
	bool ok;		/* no digest call failed */
	size_t n;
	unsigned char buf[4096];
};

/* A body canonicalizer (RFC 6376 3.4.3, 3.4.4) feeding its digest. */
struct body {
	bool used, simple;
	bool cr;		/* a CR ended the last chunk */
	bool wsp;		/* relaxed: white space not yet written */
	bool any;		/* something was written */
	unsigned long long nl;	/* line ends not yet written */
	struct sink out;
	unsigned char bh[AG_SIGN_DIGEST];
};

/* A kept header field: "Name:value" at OFF in the message's store. */
struct field {
	size_t off, len;
	size_t nlen;		/* the name, white space before ':' cut */
};

struct sign_one {
	EVP_PKEY *pk;		/* a reference of the key's */
	enum ag_sign_alg alg;
	bool hsimple;
	int body;		/* index into ag_sign_msg.body */
	unsigned expire_s;
	struct hlist h;
	char *hval;		/* the h= value, made at the end of headers */
	struct sink hd;		/* the header digest */
	char domain[AG_SIGN_NAME_MAX + 1];
	char selector[AG_SIGN_NAME_MAX + 1];
	char why[192];		/* this signature cannot be made, or "" */
};

struct ag_sign_msg {
	const struct ag_signer *s;
	bool eoh_done, eom_done;
	char why[128];		/* input no signature can take, or "" */
	char *buf;		/* one "Name:value" from ag_dkim_field() */
	size_t bufcap;
	char *store;		/* the kept fields, one after another */
	size_t storelen, storecap;
	struct field *f;
	size_t nf, fcap;
	struct body body[2];	/* relaxed, simple */
	size_t n;
	struct sign_one one[];
};

/* ---- digests ------------------------------------------------------------- */

static void
sink_flush(struct sink *k)
{
	if (k->n > 0 && EVP_DigestUpdate(k->ctx, k->buf, k->n) != 1) {
		k->ok = false;
	}
	k->n = 0;
}

static void
sink_put(struct sink *k, const void *p, size_t len)
{
	if (len >= sizeof(k->buf)) {
		sink_flush(k);
		if (EVP_DigestUpdate(k->ctx, p, len) != 1) {
			k->ok = false;
		}
		return;
	}
	if (k->n + len > sizeof(k->buf)) {
		sink_flush(k);
	}
	memcpy(k->buf + k->n, p, len);
	k->n += len;
}

static void
sink_putc(struct sink *k, unsigned char c)
{
	if (k->n == sizeof(k->buf)) {
		sink_flush(k);
	}
	k->buf[k->n++] = c;
}

/* Start K on SHA-256; false on no memory. */
static bool
sink_start(struct sink *k, const struct ag_signer *s)
{
	k->n = 0;
	k->ok = (k->ctx = EVP_MD_CTX_new()) != NULL &&
	    EVP_DigestInit_ex(k->ctx, s->sha256, NULL) == 1;
	return k->ok;
}

/* The digest of K into OUT (AG_SIGN_DIGEST bytes); false on failure. */
static bool
sink_end(struct sink *k, unsigned char *out)
{
	unsigned int len = 0;

	sink_flush(k);
	return k->ok && EVP_DigestFinal_ex(k->ctx, out, &len) == 1 &&
	    len == AG_SIGN_DIGEST;
}

/* ---- canonicalization ---------------------------------------------------- */

static bool
is_wsp(unsigned char c)
{
	return c == ' ' || c == '\t';
}

/* Write the line ends B holds back. */
static void
body_lines(struct body *b)
{
	for (; b->nl > 0; b->nl--) {
		sink_put(&b->out, "\r\n", 2);
	}
}

/* LEN bytes of a line (no CR; relaxed: no white space) into B, after the
 * line ends and the space held back. */
static void
body_run(struct body *b, const unsigned char *p, size_t len)
{
	body_lines(b);
	if (b->wsp) {
		sink_putc(&b->out, ' ');
		b->wsp = false;
	}
	sink_put(&b->out, p, len);
	b->any = true;
}

/*
 * LEN bytes of body into B.  Lines end in CRLF; a lone CR or LF is a byte
 * of its line.  Line ends are held back until more of the body comes, so
 * that empty lines at the end are never written.  Relaxed: a run of
 * white space is one space, and none at the end of a line.  The bytes
 * between are written in runs.
 */
static void
body_feed(struct body *b, const unsigned char *p, size_t len)
{
	const unsigned char *end = p + len, *q;

	while (p < end) {
		if (b->cr) {
			b->cr = false;
			if (*p == '\n') {
				b->wsp = false;
				b->nl++;
				p++;
				continue;
			}
			body_run(b, (const unsigned char *)"\r", 1);
		}
		for (q = p; q < end && *q != '\r' && (b->simple ||
		    !is_wsp(*q)); q++) {
		}
		if (q > p) {
			body_run(b, p, (size_t)(q - p));
			p = q;
		} else {
			b->cr = b->cr || *p == '\r';
			b->wsp = b->wsp || *p != '\r';
			p++;
		}
	}
}

/* The end of the body: its last line ends in one CRLF (simple: even an
 * empty body is one, RFC 6376 3.4.3; relaxed: an empty body is empty). */
static bool
body_end(struct body *b)
{
	if (b->cr) {
		b->cr = false;
		body_run(b, (const unsigned char *)"\r", 1);
	}
	b->nl = 0;
	if (b->simple || b->any) {
		sink_put(&b->out, "\r\n", 2);
	}
	return sink_end(&b->out, b->bh);
}

/*
 * The field F (LEN bytes: the name, NLEN of it before any white space
 * and the colon, then the value) into K.  Simple: as it stands.  Relaxed
 * (RFC 6376 3.4.2): the name in lower case, then ':', the value unfolded,
 * runs of white space made one space, none at either end.  CRLF after
 * unless LAST (the signature's own field).
 */
static void
field_canon(struct sink *k, bool simple, const char *f, size_t len,
    size_t nlen, bool last)
{
	const char *colon = memchr(f, ':', len);
	bool space = false, started = false;

	if (simple || colon == NULL) {
		sink_put(k, f, len);
	} else {
		for (size_t i = 0; i < nlen; i++) {
			unsigned char c = (unsigned char)f[i];

			sink_putc(k, c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c);
		}
		sink_putc(k, ':');
		for (const char *p = colon + 1; p < f + len; p++) {
			unsigned char c = (unsigned char)*p;

			if (c == '\r' || c == '\n') {
				continue;
			}
			if (is_wsp(c)) {
				space = true;
				continue;
			}
			if (space && started) {
				sink_putc(k, ' ');
			}
			space = false;
			started = true;
			sink_putc(k, c);
		}
	}
	if (!last) {
		sink_put(k, "\r\n", 2);
	}
}

/* ---- the signer ---------------------------------------------------------- */

ag_status
ag_signer_new(struct ag_signer **out, char *err, size_t errlen)
{
	struct ag_signer *s;

	*out = NULL;
	if ((s = calloc(1, sizeof(*s))) == NULL) {
		seterr(err, errlen, "out of memory");
		return AG_NOMEM;
	}
	if ((s->sha256 = EVP_MD_fetch(NULL, "SHA256", NULL)) == NULL) {
		seterr(err, errlen, "OpenSSL has no SHA-256");
		ERR_clear_error();
		free(s);
		return AG_PERMFAIL;
	}
	*out = s;
	return AG_OK;
}

void
ag_signer_free(struct ag_signer *s)
{
	if (s != NULL) {
		EVP_MD_free(s->sha256);
		free(s);
	}
}

/* ---- a message ----------------------------------------------------------- */

/* Is S a domain name of labels of letters, digits, '-' and '_' (1 to 63
 * characters each, dots between), at most MAX characters? */
static bool
name_ok(const char *s, size_t max)
{
	size_t label = 0, len = 0;

	if (s == NULL) {
		return false;
	}
	for (; s[len] != '\0'; len++) {
		char c = s[len];

		if (c == '.') {
			if (label == 0) {
				return false;
			}
			label = 0;
		} else if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		    (c >= '0' && c <= '9') || c == '-' || c == '_') {
			if (++label > AG_SIGN_LABEL_MAX) {
				return false;
			}
		} else {
			return false;
		}
	}
	return len > 0 && len <= max && label > 0;
}

/* Is the h= name S (LEN bytes) one we sign?  Letters, digits, '-' and '_'
 * only (a subset of RFC 5322 ftext: nothing that could end a tag). */
static bool
hname_ok(const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		char c = s[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		    (c >= '0' && c <= '9') || c == '-' || c == '_')) {
			return false;
		}
	}
	return len > 0;
}

/*
 * Read the h= list LIST (colon-separated, white space around names
 * ignored; NULL or no names: default_hdrs) into H, From added when
 * absent; false with ERR.
 */
static bool
hlist_read(const char *list, struct hlist *h, char *err, size_t errlen)
{
	char shown[48], *save = NULL, *tok;
	size_t n = 0;
	bool from = false;

	if (list == NULL || list[strspn(list, " \t:")] == '\0') {
		for (n = 0; default_hdrs[n] != NULL; n++) {
			h->names[n] = default_hdrs[n];
		}
		h->names[n] = NULL;
		return true;
	}
	if (strlen(list) > AG_SIGN_HLIST_MAX) {
		seterr(err, errlen, "h= list longer than %d bytes",
		    AG_SIGN_HLIST_MAX);
		return false;
	}
	memcpy(h->store, list, strlen(list) + 1);
	for (tok = strtok_r(h->store, ":", &save); tok != NULL;
	    tok = strtok_r(NULL, ":", &save)) {
		size_t len;

		tok += strspn(tok, " \t\r\n");
		len = strcspn(tok, " \t\r\n");
		if (tok[len + strspn(tok + len, " \t\r\n")] != '\0' ||
		    (len > 0 && !hname_ok(tok, len))) {
			seterr(err, errlen, "h= list: bad field name \"%s\"",
			    printable(shown, sizeof(shown), tok));
			return false;
		}
		if (len == 0) {
			continue;
		}
		if (n == AG_SIGN_MAX_HNAMES) {
			seterr(err, errlen, "h= list: more than %d names",
			    AG_SIGN_MAX_HNAMES);
			return false;
		}
		tok[len] = '\0';
		from = from || strcasecmp(tok, "from") == 0;
		h->names[n++] = tok;
	}
	if (!from) {
		h->names[n++] = "From";
	}
	h->names[n] = NULL;
	return true;
}

/* Set up O for KEY under P; false with ERR. */
static bool
one_start(struct ag_sign_msg *m, struct sign_one *o,
    const struct ag_sign_key *key, const struct ag_sign_params *p, char *err,
    size_t errlen)
{
	char why[160] = "";
	struct body *b = &m->body[p->body_simple ? 1 : 0];

	snprintf(o->domain, sizeof(o->domain), "%s", p->domain);
	snprintf(o->selector, sizeof(o->selector), "%s", p->selector);
	o->alg = p->alg;
	o->hsimple = p->header_simple;
	o->body = p->body_simple ? 1 : 0;
	o->expire_s = p->expire_s;
	if (key == NULL) {
		snprintf(why, sizeof(why), "no key loaded");
	} else if (p->alg != ag_sign_key_alg(key)) {
		snprintf(why, sizeof(why), "the key is %s, not %s",
		    ag_sign_alg_name(ag_sign_key_alg(key)),
		    ag_sign_alg_name(p->alg));
	} else if (!hlist_read(p->headers, &o->h, why, sizeof(why))) {
		/* WHY says it */
	} else if (EVP_PKEY_up_ref(ag_sign_key_pkey(key)) != 1) {
		snprintf(why, sizeof(why), "out of memory");
	} else {
		o->pk = ag_sign_key_pkey(key);
		if (!sink_start(&o->hd, m->s) ||
		    (!b->used && !sink_start(&b->out, m->s))) {
			snprintf(why, sizeof(why), "out of memory");
		}
		b->used = true;
		b->simple = p->body_simple;
	}
	ERR_clear_error();
	if (why[0] != '\0') {
		seterr(err, errlen, "DKIM signing d=%s s=%s: %s", o->domain,
		    o->selector, why);
		return false;
	}
	return true;
}

struct ag_sign_msg *
ag_sign_msg_new(struct ag_signer *s, const char *id,
    const struct ag_sign_key *const *keys,
    const struct ag_sign_params *params, size_t n, char *err, size_t errlen)
{
	struct ag_sign_msg *m;

	(void)id;
	if (s == NULL || keys == NULL || params == NULL || n == 0 ||
	    n > AG_SIGN_MAX_KEYS) {
		seterr(err, errlen, "DKIM signing: %zu keys (1 to %d) or no "
		    "signer", n, AG_SIGN_MAX_KEYS);
		return NULL;
	}
	for (size_t i = 0; i < n; i++) {
		const struct ag_sign_params *p = &params[i];
		char d[64], sel[64];

		/* s._domainkey.d must be a DNS name (RFC 6376 3.6.2.1) */
		if (!name_ok(p->domain, AG_SIGN_NAME_MAX) ||
		    !name_ok(p->selector, AG_SIGN_NAME_MAX) ||
		    strlen(p->domain) + strlen(p->selector) +
		    sizeof("._domainkey.") - 1 > AG_SIGN_NAME_MAX) {
			seterr(err, errlen, "DKIM signing d=%s s=%s: not a "
			    "usable domain or selector", printable(d, sizeof(d),
			    p->domain != NULL ? p->domain : "(none)"),
			    printable(sel, sizeof(sel), p->selector != NULL ?
			    p->selector : "(none)"));
			return NULL;
		}
	}
	m = calloc(1, sizeof(*m) + n * sizeof(m->one[0]));
	if (m == NULL) {
		seterr(err, errlen, "DKIM signing d=%s s=%s: out of memory",
		    params[0].domain, params[0].selector);
		return NULL;
	}
	m->s = s;
	m->n = n;
	for (size_t i = 0; i < n; i++) {
		if (!one_start(m, &m->one[i], keys[i], &params[i], err,
		    errlen)) {
			ag_sign_msg_free(m);
			return NULL;
		}
	}
	return m;
}

/* Let the kept header fields go (wiped: they are the user's mail). */
static void
fields_free(struct ag_sign_msg *m)
{
	if (m->store != NULL) {
		explicit_bzero(m->store, m->storelen);
	}
	free(m->store);
	free(m->f);
	m->store = NULL;
	m->f = NULL;
	m->storelen = m->storecap = m->nf = m->fcap = 0;
}

void
ag_sign_msg_free(struct ag_sign_msg *m)
{
	if (m == NULL) {
		return;
	}
	for (size_t i = 0; i < m->n; i++) {
		EVP_PKEY_free(m->one[i].pk);
		EVP_MD_CTX_free(m->one[i].hd.ctx);
		free(m->one[i].hval);
	}
	for (size_t i = 0; i < 2; i++) {
		EVP_MD_CTX_free(m->body[i].out.ctx);
	}
	fields_free(m);
	free(m->buf);
	free(m);
}

/* Note input no signature can take (the first reason is kept). */
static void
msg_refuse(struct ag_sign_msg *m, const char *why)
{
	if (m->why[0] == '\0') {
		snprintf(m->why, sizeof(m->why), "%s", why);
	}
}

/* Note that O's signature cannot be made (the first reason is kept). */
static void
one_refuse(struct sign_one *o, const char *why)
{
	if (o->why[0] == '\0') {
		snprintf(o->why, sizeof(o->why), "%s", why);
	}
}

/* Is NAME one header field name (no colon, no line break, not empty)? */
static bool
field_name_ok(const char *name)
{
	if (name[0] == '\0' || name[0] == ' ' || name[0] == '\t') {
		return false;
	}
	for (const char *p = name; *p != '\0'; p++) {
		unsigned char c = (unsigned char)*p;

		if (c == ':' || c > 0x7e ||
		    (c < 0x21 && c != ' ' && c != '\t')) {
			return false;
		}
	}
	return true;
}

ag_status
ag_sign_header(struct ag_sign_msg *m, const char *name, const char *value)
{
	struct field *f;
	size_t len = 0, nlen;
	ag_status st;

	if (m == NULL || m->eom_done || m->why[0] != '\0') {
		return AG_OK;
	}
	if (m->eoh_done) {
		msg_refuse(m, "a header field after the end of the headers");
		return AG_OK;
	}
	if (name == NULL || !field_name_ok(name)) {
		msg_refuse(m, "a malformed header field name");
		return AG_OK;
	}
	st = ag_dkim_field(&m->buf, &m->bufcap, name, value != NULL ? value :
	    "", &len);
	if (st == AG_NOMEM) {
		return st;
	}
	if (st != AG_OK || m->storelen + len > AG_SIGN_HDRS_MAX) {
		msg_refuse(m, "the header is too large to sign");
		return AG_OK;
	}
	if (m->nf == AG_SIGN_FIELDS_MAX) {
		msg_refuse(m, "more header fields than can be signed");
		return AG_OK;
	}
	if (m->storelen + len > m->storecap) {
		size_t cap = m->storecap * 2 > m->storelen + len ?
		    m->storecap * 2 : m->storelen + len + 4096;
		char *p = malloc(cap);

		if (p == NULL) {
			return AG_NOMEM;
		}
		if (m->store != NULL) {		/* wiped as it moves */
			memcpy(p, m->store, m->storelen);
			explicit_bzero(m->store, m->storelen);
			free(m->store);
		}
		m->store = p;
		m->storecap = cap;
	}
	if (m->nf == m->fcap) {
		size_t cap = m->fcap > 0 ? m->fcap * 2 : 32;
		struct field *p = reallocarray(m->f, cap, sizeof(*p));

		if (p == NULL) {
			return AG_NOMEM;
		}
		m->f = p;
		m->fcap = cap;
	}
	for (nlen = strlen(name); nlen > 0 && is_wsp((unsigned char)
	    name[nlen - 1]); nlen--) {
	}
	f = &m->f[m->nf++];
	f->off = m->storelen;
	f->len = len;
	f->nlen = nlen;
	memcpy(m->store + m->storelen, m->buf, len);
	m->storelen += len;
	explicit_bzero(m->buf, len);
	return AG_OK;
}

/* The index in O's h= list of the name of field F, or -1. */
static int
field_listed(const struct ag_sign_msg *m, const struct sign_one *o,
    const struct field *f)
{
	const char *name = m->store + f->off;

	for (int i = 0; o->h.names[i] != NULL; i++) {
		if (strlen(o->h.names[i]) == f->nlen &&
		    strncasecmp(o->h.names[i], name, f->nlen) == 0) {
			return i;
		}
	}
	return -1;
}

/*
 * Choose O's fields, make its h= value and hash the fields into its
 * header digest; AG_NOMEM, or AG_OK (with O->why when it cannot sign).
 */
static ag_status
one_headers(struct ag_sign_msg *m, struct sign_one *o)
{
	size_t *sel, ne = 0, hlen = 0, pos = 0, from = 0;
	int *ni;

	if ((sel = calloc(AG_SIGN_H_ENTRIES_MAX, sizeof(*sel))) == NULL ||
	    (ni = calloc(AG_SIGN_H_ENTRIES_MAX, sizeof(*ni))) == NULL) {
		free(sel);
		return AG_NOMEM;
	}
	/* the fields named, in message order */
	for (size_t i = 0; i < m->nf; i++) {
		int k = field_listed(m, o, &m->f[i]);

		if (k < 0) {
			continue;
		}
		if (ne == AG_SIGN_H_ENTRIES_MAX) {
			one_refuse(o, "more header fields to sign than h= "
			    "may name");
			goto out;
		}
		from += strcasecmp(o->h.names[k], "from") == 0;
		sel[ne] = i;
		ni[ne++] = k;
		hlen += m->f[i].nlen + 1;
	}
	if (from == 0) {
		one_refuse(o, "no From header field (RFC 6376 5.4 requires "
		    "it signed)");
		goto out;
	}
	if ((o->hval = malloc(hlen + sizeof("From"))) == NULL) {
		free(sel);
		free(ni);
		return AG_NOMEM;
	}
	for (size_t e = 0; e < ne; e++) {
		const struct field *f = &m->f[sel[e]];

		memcpy(o->hval + pos, m->store + f->off, f->nlen);
		pos += f->nlen;
		o->hval[pos++] = ':';
	}
	memcpy(o->hval + pos, "From", sizeof("From"));	/* over-signed */
	/*
	 * Hash as a verifier selects: the r-th mention of a name takes its
	 * r-th instance from the bottom.  Entry e is the (j+1)-th instance
	 * of its name in message order, of k; its mention order is the
	 * same, so it hashes the instance (k - j) in message order, which
	 * is an entry of the same name too.
	 */
	for (size_t e = 0; e < ne; e++) {
		size_t j = 0, k = 0, want, seen = 0, pick = 0;
		int fi = ni[e];

		for (size_t x = 0; x < ne; x++) {
			if (ni[x] == fi) {
				j += x < e;
				k++;
			}
		}
		want = k - 1 - j;	/* 0-based, message order */
		for (size_t x = 0; x < ne; x++) {
			if (ni[x] == fi && seen++ == want) {
				pick = sel[x];
				break;
			}
		}
		field_canon(&o->hd, o->hsimple, m->store + m->f[pick].off,
		    m->f[pick].len, m->f[pick].nlen, false);
	}
out:
	free(sel);
	free(ni);
	return AG_OK;
}

ag_status
ag_sign_eoh(struct ag_sign_msg *m)
{
	if (m == NULL || m->eoh_done) {
		return AG_OK;
	}
	m->eoh_done = true;
	if (m->why[0] != '\0') {
		fields_free(m);
		return AG_OK;
	}
	for (size_t i = 0; i < m->n; i++) {
		if (m->one[i].why[0] == '\0' &&
		    one_headers(m, &m->one[i]) != AG_OK) {
			return AG_NOMEM;
		}
	}
	fields_free(m);
	return AG_OK;
}

ag_status
ag_sign_body(struct ag_sign_msg *m, const unsigned char *buf, size_t len)
{
	ag_status st;

	if (m == NULL || buf == NULL || len == 0 || m->eom_done) {
		return AG_OK;
	}
	if (!m->eoh_done && (st = ag_sign_eoh(m)) != AG_OK) {
		return st;
	}
	if (m->why[0] != '\0') {
		return AG_OK;
	}
	for (size_t i = 0; i < 2; i++) {
		if (m->body[i].used) {
			body_feed(&m->body[i], buf, len);
		}
	}
	return AG_OK;
}

/* ---- the signature field ------------------------------------------------- */

/* The field being built, with the column its last line has reached. */
struct fold {
	char *s;
	size_t len, cap, col;
	bool ok;
};

static void
fold_raw(struct fold *f, const char *p, size_t len)
{
	if (!f->ok) {
		return;
	}
	if (f->len + len + 1 > f->cap) {
		size_t cap = (f->len + len + 1) * 2;
		char *n = realloc(f->s, cap);

		if (n == NULL) {
			f->ok = false;
			return;
		}
		f->s = n;
		f->cap = cap;
	}
	memcpy(f->s + f->len, p, len);
	f->len += len;
	f->s[f->len] = '\0';
}

/* Append the word W (LEN bytes), after a space if SPACE, on a new line if
 * it would pass the margin on this one. */
static void
fold_word(struct fold *f, const char *w, size_t len, bool space)
{
	if (f->col + space + len > AG_SIGN_FOLD &&
	    f->col > AG_SIGN_TAB_COL) {
		fold_raw(f, "\r\n\t", 3);
		f->col = AG_SIGN_TAB_COL;
	} else if (space) {
		fold_raw(f, " ", 1);
		f->col++;
	}
	fold_raw(f, w, len);
	f->col += len;
}

/* Append base64 text B (LEN bytes), broken anywhere at the margin. */
static void
fold_b64(struct fold *f, const char *b, size_t len)
{
	while (len > 0) {
		size_t room = f->col < AG_SIGN_FOLD ? AG_SIGN_FOLD - f->col : 0;
		size_t n = room < len ? room : len;

		if (n == 0) {
			fold_raw(f, "\r\n\t", 3);
			f->col = AG_SIGN_TAB_COL;
			continue;
		}
		fold_raw(f, b, n);
		f->col += n;
		b += n;
		len -= n;
	}
}

/* The tags of O's signature up to "b=" into F, BH its body hash, T the
 * signing time. */
static void
one_tags(const struct sign_one *o, const unsigned char *bh, time_t t,
    struct fold *f)
{
	char w[AG_SIGN_NAME_MAX + 8], b64[4 * AG_SIGN_DIGEST / 3 + 4];
	const char *h = o->hval, *c;

	f->col = AG_SIGN_FIRST_COL;
	fold_raw(f, "v=1;", 4);
	f->col += 4;
	snprintf(w, sizeof(w), "a=%s;", ag_sign_alg_name(o->alg));
	fold_word(f, w, strlen(w), true);
	snprintf(w, sizeof(w), "c=%s/%s;", o->hsimple ? "simple" : "relaxed",
	    o->body == 1 ? "simple" : "relaxed");
	fold_word(f, w, strlen(w), true);
	snprintf(w, sizeof(w), "d=%s;", o->domain);
	fold_word(f, w, strlen(w), true);
	snprintf(w, sizeof(w), "s=%s;", o->selector);
	fold_word(f, w, strlen(w), true);
	snprintf(w, sizeof(w), "t=%llu;", (unsigned long long)t);
	fold_word(f, w, strlen(w), true);
	if (o->expire_s > 0) {
		snprintf(w, sizeof(w), "x=%llu;", (unsigned long long)t +
		    o->expire_s);
		fold_word(f, w, strlen(w), true);
	}
	/* h=: a line may break after any colon (RFC 6376 3.5) */
	for (bool first = true; *h != '\0'; h = c + (*c == ':'), first = false) {
		size_t len;

		c = h + strcspn(h, ":");
		len = (size_t)(c - h);
		if (len > sizeof(w) - 4) {
			len = sizeof(w) - 4;	/* never: names are short */
		}
		snprintf(w, sizeof(w), "%s%.*s%c", first ? "h=" : "", (int)len,
		    h, *c == ':' ? ':' : ';');
		fold_word(f, w, strlen(w), first);
	}
	EVP_EncodeBlock((unsigned char *)b64, bh, AG_SIGN_DIGEST);
	snprintf(w, sizeof(w), "bh=%s;", b64);
	fold_word(f, w, strlen(w), true);
	fold_word(f, "b=", 2, true);
}

/* Sign the DIGEST with O's key into SIG (*SIGLEN); false on failure. */
static bool
one_crypt(const struct sign_one *o, const unsigned char *digest,
    unsigned char *sig, size_t *siglen)
{
	EVP_PKEY_CTX *pc = NULL;
	EVP_MD_CTX *c = NULL;
	bool ok;

	if ((size_t)EVP_PKEY_get_size(o->pk) > *siglen) {
		return false;
	}
	if (o->alg == AG_SIGN_ED25519_SHA256) {
		/* RFC 8463 3: PureEdDSA over the SHA-256 digest */
		ok = (c = EVP_MD_CTX_new()) != NULL &&
		    EVP_DigestSignInit(c, NULL, NULL, NULL, o->pk) == 1 &&
		    EVP_DigestSign(c, sig, siglen, digest, AG_SIGN_DIGEST) == 1;
		EVP_MD_CTX_free(c);
		return ok;
	}
	/* RFC 8017 8.2: PKCS #1 v1.5 over DigestInfo(SHA-256, DIGEST) */
	ok = (pc = EVP_PKEY_CTX_new(o->pk, NULL)) != NULL &&
	    EVP_PKEY_sign_init(pc) == 1 &&
	    EVP_PKEY_CTX_set_rsa_padding(pc, RSA_PKCS1_PADDING) == 1 &&
	    EVP_PKEY_CTX_set_signature_md(pc, EVP_sha256()) == 1 &&
	    EVP_PKEY_sign(pc, sig, siglen, digest, AG_SIGN_DIGEST) == 1;
	EVP_PKEY_CTX_free(pc);
	return ok;
}

/*
 * O's signature field value, with LF for CRLF, into *OUT; AG_NOMEM, or
 * AG_PERMFAIL with O->why.
 */
static ag_status
one_finish(struct ag_sign_msg *m, struct sign_one *o, time_t t, char **out)
{
	static const char name[] = "DKIM-Signature: ";
	unsigned char digest[AG_SIGN_DIGEST], sig[AG_SIGN_SIG_MAX];
	char b64[(AG_SIGN_SIG_MAX + 2) / 3 * 4 + 1];
	struct fold f = { NULL, 0, 0, 0, true };
	size_t siglen = sizeof(sig), j = 0;
	char *v;

	fold_raw(&f, name, sizeof(name) - 1);
	one_tags(o, m->body[o->body].bh, t, &f);
	if (!f.ok) {
		free(f.s);
		one_refuse(o, "out of memory");
		return AG_NOMEM;
	}
	/* the field up to "b=", as it will stand: "Name: value" */
	field_canon(&o->hd, o->hsimple, f.s, f.len, sizeof(name) - 3, true);
	if (!sink_end(&o->hd, digest) || !one_crypt(o, digest, sig, &siglen)) {
		char e[96];

		snprintf(e, sizeof(e), "signing failed (OpenSSL: %s)",
		    ERR_peek_last_error() != 0 ?
		    ERR_reason_error_string(ERR_peek_last_error()) : "no reason");
		free(f.s);
		one_refuse(o, e);
		return AG_PERMFAIL;
	}
	EVP_EncodeBlock((unsigned char *)b64, sig, (int)siglen);
	fold_b64(&f, b64, strlen(b64));
	if (!f.ok) {
		free(f.s);
		one_refuse(o, "out of memory");
		return AG_NOMEM;
	}
	/* the value after "DKIM-Signature: ", "\r\n\t" made "\n\t" */
	v = f.s;
	for (size_t i = sizeof(name) - 1; i < f.len; i++) {
		if (f.s[i] != '\r') {
			v[j++] = f.s[i];
		}
	}
	v[j] = '\0';
	*out = v;
	return AG_OK;
}

ag_status
ag_sign_eom(struct ag_sign_msg *m, char **values, char *err, size_t errlen)
{
	ag_status st = AG_OK;
	time_t t = time(NULL);
	size_t i;

	if (m == NULL || values == NULL) {
		seterr(err, errlen, "DKIM signing: no message");
		return AG_PERMFAIL;
	}
	for (i = 0; i < m->n; i++) {
		values[i] = NULL;
	}
	if (m->eom_done) {
		seterr(err, errlen, "DKIM signing d=%s s=%s: the message was "
		    "already signed", m->one[0].domain, m->one[0].selector);
		return AG_PERMFAIL;
	}
	if (!m->eoh_done && (st = ag_sign_eoh(m)) != AG_OK) {
		seterr(err, errlen, "DKIM signing d=%s s=%s: out of memory",
		    m->one[0].domain, m->one[0].selector);
		return st;
	}
	m->eom_done = true;
	if (m->why[0] != '\0') {
		seterr(err, errlen, "DKIM signing d=%s s=%s: %s",
		    m->one[0].domain, m->one[0].selector, m->why);
		return AG_PERMFAIL;
	}
	for (i = 0; i < 2; i++) {
		if (m->body[i].used && !body_end(&m->body[i])) {
			seterr(err, errlen, "DKIM signing d=%s s=%s: the body "
			    "hash failed", m->one[0].domain, m->one[0].selector);
			ERR_clear_error();
			return AG_PERMFAIL;
		}
	}
	for (i = 0; i < m->n && st == AG_OK; i++) {
		struct sign_one *o = &m->one[i];

		st = o->why[0] != '\0' ? AG_PERMFAIL :
		    one_finish(m, o, t, &values[i]);
		if (st != AG_OK) {
			seterr(err, errlen, "DKIM signing d=%s s=%s: %s",
			    o->domain, o->selector, o->why);
		}
	}
	ERR_clear_error();
	if (st != AG_OK) {
		for (i = 0; i < m->n; i++) {
			free(values[i]);
			values[i] = NULL;
		}
	}
	return st;
}

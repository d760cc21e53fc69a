/*
 * dkimsign.c - streaming DKIM signing over libopendkim.
 *
 * Keys (lib/dkimkey.c).  A key file is opened once, checked with
 * fstat() on the open descriptor (regular, mode & 077 == 0, size), read
 * whole up to AG_SIGN_KEY_FILE_MAX, parsed by OpenSSL with a passphrase
 * callback that only notes it was asked (an encrypted key is refused,
 * never prompted for), checked for type, size and that its halves match,
 * and kept as a fresh unencrypted PKCS#8 PEM: what libopendkim's
 * dkim_sign() takes, without whatever else the file held.  The file's
 * bytes and the PEM are wiped when done with.  libopendkim copies the PEM
 * into every message handle and parses it again there
 * (dkim_privkey_load()); its DKIM_LIBs are made with an allocator whose
 * free wipes each block, so those copies do not outlive the message in
 * the heap either.
 *
 * The library.  x= comes from DKIM_OPTS_SIGNATURETTL, an option of the
 * DKIM_LIB, not of a handle; so struct ag_signer keeps one DKIM_LIB per
 * distinct (expire_s, h= list) in use, made on first use under a lock,
 * read-only after.  The h= list is a library option too
 * (DKIM_OPTS_SIGNHDRS), compiled into a regular expression once per
 * DKIM_LIB; dkim_signhdrs() would compile it for every message (some
 * 200 us for the default list).  Past AG_SIGN_MAX_HLISTS a new h= list
 * takes the DKIM_LIB of its expire_s and is given per message; past
 * AG_SIGN_MAX_TTLS a new expire_s fails.  Over-signing is the library option
 * DKIM_OPTS_OVERSIGNHDRS ("from"), the same in every DKIM_LIB.  A list
 * is always given, so libopendkim's default of signing every field never
 * applies.  The DNS hooks refuse every query (signing needs none) and the
 * init/close hooks are NULL, as in lib/dkim.c.
 *
 * A message.  One DKIM handle per key.  Header fields are rebuilt once as
 * "Name:" + the raw value with bare LF made CRLF (as lib/dkim.c does) and
 * given to every handle; body chunks likewise.  Input the handles cannot
 * take (a field too long, no From) is noted and reported at the end, so
 * the feeding calls fail only for memory.  At the end each handle signs;
 * dkim_getsighdr_d() with the width of "DKIM-Signature: " gives the value
 * as libopendkim hashed it after "DKIM-Signature: " (simple header
 * canonicalization covers the signature's own folding, and that one
 * space); its CRLFs become LF for smfi_insheader().
 *
 * What libopendkim 2.11.0 (Debian 12: 2.11.0~beta2) gets wrong, and what
 * is done about it here:
 *   - An Ed25519 signature under simple header canonicalization is given
 *     out folded differently from how it was hashed, and never verifies:
 *     b_refold() puts b= back where it was hashed (AG_SIGN_LIB_B_BUG).
 *   - Relaxed body canonicalization refuses a body that does not end in
 *     CRLF ("CRLF at end of body missing"); RFC 6376 3.4.4 adds the CRLF,
 *     and so does ag_sign_eom (over SMTP a body always ends in one).
 *   - dkim_signhdrs() with a list too long for its 1 KB regex buffer
 *     leaves a handle dkim_free() cannot free: the list is bounded first.
 *   - The key is parsed again for every message (OpenSSL 3.0's decoders:
 *     about 1 ms, more than an RSA-2048 signature; tests/bench/README.md).
 *   - dkim_free() does not free an Ed25519 key (about 1.3 KB per signed
 *     message; fixed upstream after 2.11.0, trusteddomainproject/OpenDKIM
 *     PR #321).  Nothing here can reach it: it needs a fixed libopendkim.
 *     dkim_privkey_load() is never called early, as a handle freed before
 *     dkim_eom() would then leak its key whatever the algorithm.
 *
 * Thread safety: see dkimsign.h.
 */
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <opendkim/dkim.h>

#include "dkim.h"
#include "dkimsign.h"
#include "dkimsign_int.h"
#include "log.h"

#define seterr ag_sign_seterr
#define printable ag_sign_printable
#define mem_find ag_sign_mem_find

/* Bounds on the input: one field is bounded by ag_dkim_field() (1 MB);
 * all the header fields together here (libopendkim keeps every field of
 * every handle). */
#define AG_SIGN_HDRS_MAX (8ULL * 1024 * 1024)

/* libopendkim builds the h= names into a regular expression in a buffer
 * of 1,024 bytes (dkim_signhdrs(): "^(from|name|...)$"); a longer one
 * fails, and leaves the handle with a regex_t that dkim_free() would free
 * uncompiled.  Counted here with room to spare: every name + 3, plus 16,
 * must fit in this. */
#define AG_SIGN_HLIST_RE_MAX 1000
#define AG_SIGN_NAME_MAX 253		/* RFC 1035 2.3.4: s._domainkey.d */
#define AG_SIGN_LABEL_MAX 63		/* RFC 1035 2.3.4 */

/* libopendkim's header folding (dkim_getsighdr_d()): its default margin,
 * the columns it counts for "DKIM-Signature: " and for a line that
 * starts with a tab, and the last version known to fold b= differently
 * when signing and when giving out an Ed25519 signature (see b_refold). */
#define AG_SIGN_LIB_MARGIN 75		/* DKIM_HDRMARGIN */
#define AG_SIGN_LIB_FIRST 16
#define AG_SIGN_LIB_TAB 8
#define AG_SIGN_LIB_B_BUG 0x020bffffUL	/* 2.11.x */

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



/* A DKIM_LIB: x= after TTL seconds (0: none), h= names HDRS by default
 * (NULL: default_hdrs). */
struct sign_lib {
	unsigned ttl;
	char *hdrs;		/* the names joined with ':', or NULL */
	DKIM_LIB *lib;
};

struct ag_signer {
	pthread_mutex_t lock;	/* guards libs[] and the counts */
	struct sign_lib libs[AG_SIGN_MAX_TTLS + AG_SIGN_MAX_HLISTS];
	size_t n;
	unsigned nttl, nlist;	/* of libs[]: default h=, other h= */
};

/* An h= list read into names (pointing into STORE), with its key: the
 * names joined with ':' (shorter than the list and "From" added, as the
 * bound on the list is on names + 3 each). */
struct hlist {
	const char *names[AG_SIGN_MAX_HNAMES + 2];	/* NULL-terminated */
	char store[AG_SIGN_HLIST_RE_MAX];
	char key[AG_SIGN_HLIST_RE_MAX];		/* "" for default_hdrs */
};

static const struct hlist none;		/* default_hdrs */

struct sign_one {
	DKIM *dkim;
	bool b_fix;		/* Ed25519, simple headers: see b_refold */
	char domain[AG_SIGN_NAME_MAX + 1];
	char selector[AG_SIGN_NAME_MAX + 1];
	char why[192];		/* this signature cannot be made, or "" */
};

struct ag_sign_msg {
	char id[64];		/* libopendkim keeps the pointer */
	bool eoh_done, eom_done;
	char why[128];		/* input no signature can take, or "" */
	char *buf;		/* "Name:value" for dkim_header() */
	size_t bufcap;
	unsigned long long hbytes;
	bool body;		/* some body came */
	unsigned char tail[2];	/* its last two bytes */
	size_t n;
	struct sign_one one[];
};

/* ---- the library --------------------------------------------------------- */

/* libopendkim's allocator: malloc, and a free that wipes (the key's PEM is
 * copied into every handle; the canonicalized message passes through). */
static void *
wipe_malloc(void *closure, size_t n)
{
	return malloc(n);
}

static void
wipe_free(void *closure, void *p)
{
	if (p != NULL) {
		explicit_bzero(p, malloc_usable_size(p));
		free(p);
	}
}

/* libopendkim's DNS hooks: signing looks nothing up; refuse all. */
static int
dns_refuse(void *srv, int type, unsigned char *query, unsigned char *buf,
    size_t buflen, void **qh)
{
	return DKIM_DNS_ERROR;
}

static int
dns_waitreply(void *srv, void *qh, struct timeval *to, size_t *bytes,
    int *error, int *dnssec)
{
	return DKIM_DNS_ERROR;
}

static int
dns_cancel(void *srv, void *qh)
{
	return 0;
}

/* A DKIM_LIB whose signatures carry x= TTL seconds after t= (none if 0)
 * and name the fields of H by default. */
static DKIM_LIB *
lib_make(struct ag_signer *s, unsigned ttl, const struct hlist *h, char *err,
    size_t errlen)
{
	static const char *const oversign[] = { "from", NULL };
	DKIM_LIB *lib = dkim_init(wipe_malloc, wipe_free);
	const char *const *names = h->key[0] != '\0' ? h->names : default_hdrs;
	uint64_t t = ttl;
	unsigned bits = AG_SIGN_MIN_RSA_BITS;

	if (lib == NULL) {
		seterr(err, errlen, "out of memory (libopendkim's dkim_init)");
		return NULL;
	}
	if ((ttl > 0 && dkim_options(lib, DKIM_OP_SETOPT,
	    DKIM_OPTS_SIGNATURETTL, &t, sizeof(t)) != DKIM_STAT_OK) ||
	    dkim_options(lib, DKIM_OP_SETOPT, DKIM_OPTS_OVERSIGNHDRS,
	    (void *)(uintptr_t)oversign, sizeof(char **)) != DKIM_STAT_OK ||
	    dkim_options(lib, DKIM_OP_SETOPT, DKIM_OPTS_SIGNHDRS,
	    (void *)(uintptr_t)names, sizeof(char **)) != DKIM_STAT_OK ||
	    dkim_options(lib, DKIM_OP_SETOPT, DKIM_OPTS_MINKEYBITS, &bits,
	    sizeof(bits)) != DKIM_STAT_OK) {
		seterr(err, errlen, "libopendkim refuses a signing option");
		dkim_close(lib);
		return NULL;
	}
	if (!dkim_libfeature(lib, DKIM_FEATURE_SHA256) ||
	    !dkim_libfeature(lib, DKIM_FEATURE_ED25519) ||
	    !dkim_libfeature(lib, DKIM_FEATURE_OVERSIGN)) {
		seterr(err, errlen, "libopendkim lacks SHA-256, Ed25519 or "
		    "over-signing");
		dkim_close(lib);
		return NULL;
	}
	dkim_dns_set_query_service(lib, s);
	dkim_dns_set_query_start(lib, dns_refuse);
	dkim_dns_set_query_waitreply(lib, dns_waitreply);
	dkim_dns_set_query_cancel(lib, dns_cancel);
	dkim_dns_set_init(lib, NULL);
	dkim_dns_set_close(lib, NULL);
	return lib;
}

/* Is L the library for TTL and H? */
static bool
lib_is(const struct sign_lib *l, unsigned ttl, const struct hlist *h)
{
	return l->ttl == ttl && (l->hdrs == NULL ? h->key[0] == '\0' :
	    strcmp(l->hdrs, h->key) == 0);
}

/* Add a DKIM_LIB for TTL and H (a list: with its key) to S; NULL with
 * ERR.  S is locked. */
static DKIM_LIB *
lib_add(struct ag_signer *s, unsigned ttl, const struct hlist *h, char *err,
    size_t errlen)
{
	char *key = NULL;
	DKIM_LIB *lib;

	if (h->key[0] != '\0' && (key = strdup(h->key)) == NULL) {
		seterr(err, errlen, "out of memory");
		return NULL;
	}
	if ((lib = lib_make(s, ttl, h, err, errlen)) == NULL) {
		free(key);
		return NULL;
	}
	s->libs[s->n].ttl = ttl;
	s->libs[s->n].hdrs = key;
	s->libs[s->n++].lib = lib;
	if (key != NULL) {
		s->nlist++;
	} else {
		s->nttl++;
	}
	return lib;
}

/*
 * The DKIM_LIB for TTL and H, made on first use: one per TTL with the
 * default list (AG_SIGN_MAX_TTLS), one per TTL and other list
 * (AG_SIGN_MAX_HLISTS).  Past the second bound, the first serves and
 * *PER_MSG says that H must be given to each message (dkim_signhdrs()).
 * NULL with ERR: past the first bound, or no memory.
 */
static DKIM_LIB *
lib_for(struct ag_signer *s, unsigned ttl, const struct hlist *h,
    bool *per_msg, char *err, size_t errlen)
{
	DKIM_LIB *lib = NULL, *base = NULL;

	*per_msg = false;
	pthread_mutex_lock(&s->lock);
	for (size_t i = 0; i < s->n && lib == NULL; i++) {
		if (lib_is(&s->libs[i], ttl, h)) {
			lib = s->libs[i].lib;
		} else if (lib_is(&s->libs[i], ttl, &none)) {
			base = s->libs[i].lib;
		}
	}
	if (lib == NULL && h->key[0] != '\0' &&
	    s->nlist < AG_SIGN_MAX_HLISTS) {
		lib = lib_add(s, ttl, h, err, errlen);
	} else if (lib == NULL) {
		*per_msg = h->key[0] != '\0';
		if ((lib = base) == NULL && s->nttl == AG_SIGN_MAX_TTLS) {
			seterr(err, errlen, "more than %d signature lifetimes "
			    "(x=) in use", AG_SIGN_MAX_TTLS);
		} else if (lib == NULL) {
			lib = lib_add(s, ttl, &none, err, errlen);
		}
	}
	pthread_mutex_unlock(&s->lock);
	return lib;
}

ag_status
ag_signer_new(struct ag_signer **out, char *err, size_t errlen)
{
	struct ag_signer *s;
	bool per_msg;

	*out = NULL;
	if ((s = calloc(1, sizeof(*s))) == NULL) {
		seterr(err, errlen, "out of memory");
		return AG_NOMEM;
	}
	if (pthread_mutex_init(&s->lock, NULL) != 0) {
		seterr(err, errlen, "cannot make a mutex");
		free(s);
		return AG_NOMEM;
	}
	/* the library without x=, made now so that a broken libopendkim
	 * shows at start-up */
	if (lib_for(s, 0, &none, &per_msg, err, errlen) == NULL) {
		ag_signer_free(s);
		return AG_PERMFAIL;
	}
	*out = s;
	return AG_OK;
}

void
ag_signer_free(struct ag_signer *s)
{
	if (s != NULL) {
		for (size_t i = 0; i < s->n; i++) {
			dkim_close(s->libs[i].lib);
			free(s->libs[i].hdrs);
		}
		pthread_mutex_destroy(&s->lock);
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

/* Is the h= name S (LEN bytes) one we give libopendkim?  Letters, digits,
 * '-' and '_' only: it goes into a regular expression. */
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
	size_t n = 0, used = 0, o = 0;
	bool from = false;

	h->key[0] = '\0';
	if (list == NULL || list[strspn(list, " \t:")] == '\0') {
		return true;
	}
	if (strlen(list) >= sizeof(h->store)) {
		seterr(err, errlen, "h= list longer than %zu bytes",
		    sizeof(h->store) - 1);
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
		used += len + 3;
	}
	if (!from) {
		h->names[n++] = "From";
		used += 7;
	}
	h->names[n] = NULL;
	if (used + 16 > AG_SIGN_HLIST_RE_MAX) {
		seterr(err, errlen, "h= list too long for libopendkim");
		return false;
	}
	for (size_t i = 0; i < n; i++) {	/* fits: as long as the list */
		o += (size_t)snprintf(h->key + o, sizeof(h->key) - o, "%s%s",
		    i > 0 ? ":" : "", h->names[i]);
	}
	return true;
}

/* Make the handle of O for KEY under P; false with ERR. */
static bool
one_start(struct ag_signer *s, struct ag_sign_msg *m, struct sign_one *o,
    const struct ag_sign_key *key, const struct ag_sign_params *p, char *err,
    size_t errlen)
{
	char why[160] = "";
	struct hlist h;
	DKIM_LIB *lib;
	DKIM_STAT st = DKIM_STAT_OK;
	bool per_msg = false;

	if (key == NULL) {
		snprintf(why, sizeof(why), "no key loaded");
	} else if (p->alg != ag_sign_key_alg(key)) {
		snprintf(why, sizeof(why), "the key is %s, not %s",
		    ag_sign_alg_name(ag_sign_key_alg(key)), ag_sign_alg_name(p->alg));
	} else if (!hlist_read(p->headers, &h, why, sizeof(why))) {
		/* WHY says it */
	} else if ((lib = lib_for(s, p->expire_s, &h, &per_msg, why,
	    sizeof(why))) == NULL) {
		/* WHY says it */
	} else if ((o->dkim = dkim_sign(lib, (const unsigned char *)m->id, NULL,
	    (dkim_sigkey_t)(uintptr_t)ag_sign_key_pem(key),
	    (const unsigned char *)o->selector,
	    (const unsigned char *)o->domain, p->header_simple ?
	    DKIM_CANON_SIMPLE : DKIM_CANON_RELAXED, p->body_simple ?
	    DKIM_CANON_SIMPLE : DKIM_CANON_RELAXED, p->alg ==
	    AG_SIGN_RSA_SHA256 ? DKIM_SIGN_RSASHA256 : DKIM_SIGN_ED25519SHA256,
	    -1, &st)) == NULL) {
		snprintf(why, sizeof(why), "%s", st == DKIM_STAT_NORESOURCE ?
		    "out of memory" : "libopendkim refuses to sign");
	} else if (per_msg && dkim_signhdrs(o->dkim, h.key[0] != '\0' ?
	    h.names : (const char **)(uintptr_t)default_hdrs) !=
	    DKIM_STAT_OK) {
		/* compiled now: H may go */
		snprintf(why, sizeof(why), "libopendkim refuses the h= list");
	}
	ERR_clear_error();	/* OpenSSL's decoders leave errors behind */
	o->b_fix = p->alg == AG_SIGN_ED25519_SHA256 && p->header_simple &&
	    dkim_libversion() <= AG_SIGN_LIB_B_BUG;
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

	if (s == NULL || keys == NULL || params == NULL || n == 0 ||
	    n > AG_SIGN_MAX_KEYS) {
		seterr(err, errlen, "DKIM signing: %zu keys (1 to %d) or no "
		    "signing library", n, AG_SIGN_MAX_KEYS);
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
	printable(m->id, sizeof(m->id), id != NULL ? id : "-");
	m->n = n;
	for (size_t i = 0; i < n; i++) {
		struct sign_one *o = &m->one[i];

		snprintf(o->domain, sizeof(o->domain), "%s", params[i].domain);
		snprintf(o->selector, sizeof(o->selector), "%s",
		    params[i].selector);
		if (!one_start(s, m, o, keys[i], &params[i], err, errlen)) {
			ag_sign_msg_free(m);
			return NULL;
		}
	}
	return m;
}

void
ag_sign_msg_free(struct ag_sign_msg *m)
{
	if (m != NULL) {
		for (size_t i = 0; i < m->n; i++) {
			if (m->one[i].dkim != NULL) {
				dkim_free(m->one[i].dkim);
			}
		}
		free(m->buf);
		free(m);
	}
}

/* Note input no signature can take (the first reason is kept). */
static void
msg_refuse(struct ag_sign_msg *m, const char *why)
{
	if (m->why[0] == '\0') {
		snprintf(m->why, sizeof(m->why), "%s", why);
	}
}

/* Note that O's signature cannot be made: WHAT, and libopendkim's word. */
static void
one_refuse(struct sign_one *o, const char *what)
{
	const char *le = dkim_geterror(o->dkim);
	char lp[128];

	if (o->why[0] == '\0') {
		snprintf(o->why, sizeof(o->why), "%s%s%s", what,
		    le != NULL && le[0] != '\0' ? ": " : "",
		    le != NULL ? printable(lp, sizeof(lp), le) : "");
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
	size_t len = 0;
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
	st = ag_dkim_field(&m->buf, &m->bufcap, name, value != NULL ? value : "",
	    &len);
	if (st == AG_NOMEM) {
		return st;
	}
	if (st != AG_OK || (m->hbytes += len) > AG_SIGN_HDRS_MAX) {
		msg_refuse(m, "the header is too large to sign");
		return AG_OK;
	}
	for (size_t i = 0; i < m->n; i++) {
		struct sign_one *o = &m->one[i];
		DKIM_STAT dst;

		if (o->why[0] != '\0') {
			continue;
		}
		dst = dkim_header(o->dkim, (unsigned char *)m->buf, len);
		if (dst == DKIM_STAT_NORESOURCE) {
			return AG_NOMEM;
		}
		if (dst != DKIM_STAT_OK) {
			one_refuse(o, "a header field was refused");
		}
	}
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
		return AG_OK;
	}
	for (size_t i = 0; i < m->n; i++) {
		struct sign_one *o = &m->one[i];
		DKIM_STAT dst;

		if (o->why[0] != '\0') {
			continue;
		}
		dst = dkim_eoh(o->dkim);
		if (dst == DKIM_STAT_NORESOURCE) {
			return AG_NOMEM;
		}
		if (dst != DKIM_STAT_OK) {	/* e.g. no From */
			one_refuse(o, "the header cannot be signed");
		}
	}
	return AG_OK;
}

/* Give LEN bytes of body to every handle still signing. */
static ag_status
body_feed(struct ag_sign_msg *m, const unsigned char *buf, size_t len)
{
	for (size_t i = 0; i < m->n; i++) {
		struct sign_one *o = &m->one[i];
		DKIM_STAT dst;

		if (o->why[0] != '\0') {
			continue;
		}
		/* libopendkim only reads the chunk */
		dst = dkim_body(o->dkim, (unsigned char *)(uintptr_t)buf, len);
		if (dst == DKIM_STAT_NORESOURCE) {
			return AG_NOMEM;
		}
		if (dst != DKIM_STAT_OK) {
			one_refuse(o, "the body was refused");
		}
	}
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
	if (len >= 2) {
		memcpy(m->tail, buf + len - 2, 2);
	} else {
		m->tail[0] = m->tail[1];
		m->tail[1] = buf[0];
	}
	m->body = true;
	return body_feed(m, buf, len);
}


/*
 * libopendkim 2.11 hashes the signature field as dkim_getsighdr_d() folds
 * it with b= empty, then gives it out folded with b= full.  For RSA, b=
 * always starts a new line; for Ed25519 it is not forced, so an empty b=
 * stays on the line before when 2 more columns fit, while the full one
 * (90 columns) never does.  Under simple header canonicalization the
 * line break before b= is hashed, so such signatures never verify.  H
 * (LEN bytes, CRLF) is refolded as it was hashed: " b=" on that line,
 * its value folded anew (white space inside b= is not hashed, RFC 6376
 * 3.7).  Into *OUT (the caller frees); false on no memory.
 */
static bool
b_refold(const char *h, size_t len, char **out)
{
	const char *mark = NULL, *line, *p;
	size_t col, o = 0;
	char *v;

	*out = NULL;
	for (p = h; (p = mem_find(p, len - (size_t)(p - h), "\r\n\tb=")) !=
	    NULL; p += 5) {
		mark = p;	/* b= is the last tag */
	}
	if (mark == NULL) {
		return true;
	}
	for (line = mark; line > h && !(line[-1] == '\n' && line - 1 > h &&
	    line[-2] == '\r'); line--) {
	}
	/* columns as libopendkim counts them: the tab is 8 */
	col = line == h ? AG_SIGN_LIB_FIRST + (size_t)(mark - h) :
	    AG_SIGN_LIB_TAB + (size_t)(mark - line) - 1;
	if (col + 2 > AG_SIGN_LIB_MARGIN) {
		return true;	/* b= started a line when hashed, too */
	}
	if ((v = malloc(len + 16 + len / 8)) == NULL) {
		return false;
	}
	memcpy(v, h, (size_t)(mark - h));
	o = (size_t)(mark - h);
	memcpy(v + o, " b=", 3);
	o += 3;
	col += 3;
	for (p = mark + 5; p < h + len; p++) {
		if (*p == '\r' || *p == '\n' || *p == '\t' || *p == ' ') {
			continue;
		}
		if (col >= AG_SIGN_LIB_MARGIN) {
			memcpy(v + o, "\r\n\t ", 4);
			o += 4;
			col = AG_SIGN_LIB_TAB + 1;
		}
		v[o++] = *p;
		col++;
	}
	v[o] = '\0';
	*out = v;
	return true;
}

/* The header value of O's signature, libopendkim's with LF for CRLF,
 * into *OUT; AG_NOMEM, or AG_PERMFAIL with O->why. */
static ag_status
one_finish(struct sign_one *o, char **out)
{
	unsigned char *h = NULL;
	size_t len = 0, j = 0;
	DKIM_STAT dst;
	char *v, *fixed = NULL;

	dst = dkim_eom(o->dkim, NULL);
	if (dst == DKIM_STAT_OK) {
		dst = dkim_getsighdr_d(o->dkim,
		    sizeof(DKIM_SIGNHEADER ": ") - 1, &h, &len);
	}
	if (dst == DKIM_STAT_NORESOURCE) {
		one_refuse(o, "out of memory");
		return AG_NOMEM;
	}
	if (dst != DKIM_STAT_OK || h == NULL || len == 0) {
		one_refuse(o, "signing failed");
		return AG_PERMFAIL;
	}
	if (o->b_fix && !b_refold((const char *)h, len, &fixed)) {
		one_refuse(o, "out of memory");
		return AG_NOMEM;
	}
	if (fixed != NULL) {
		h = (unsigned char *)fixed;
		len = strlen(fixed);
	}
	if ((v = malloc(len + 1)) == NULL) {
		free(fixed);
		one_refuse(o, "out of memory");
		return AG_NOMEM;
	}
	for (size_t i = 0; i < len; i++) {
		if (!(h[i] == '\r' && i + 1 < len && h[i + 1] == '\n')) {
			v[j++] = (char)h[i];
		}
	}
	v[j] = '\0';
	free(fixed);
	*out = v;
	return AG_OK;
}

ag_status
ag_sign_eom(struct ag_sign_msg *m, char **values, char *err, size_t errlen)
{
	ag_status st = AG_OK;
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
	/* RFC 6376 3.4.3, 3.4.4: a body not ending in CRLF gets one (only
	 * possible outside SMTP); libopendkim's relaxed canonicalization
	 * would refuse it instead */
	if (m->why[0] == '\0' && m->body && memcmp(m->tail, "\r\n", 2) != 0 &&
	    body_feed(m, (const unsigned char *)"\r\n", 2) != AG_OK) {
		seterr(err, errlen, "DKIM signing d=%s s=%s: out of memory",
		    m->one[0].domain, m->one[0].selector);
		return AG_NOMEM;
	}
	m->eom_done = true;
	if (m->why[0] != '\0') {
		seterr(err, errlen, "DKIM signing d=%s s=%s: %s",
		    m->one[0].domain, m->one[0].selector, m->why);
		return AG_PERMFAIL;
	}
	for (i = 0; i < m->n && st == AG_OK; i++) {
		struct sign_one *o = &m->one[i];

		st = o->why[0] != '\0' ? AG_PERMFAIL :
		    one_finish(o, &values[i]);
		ERR_clear_error();
		if (st != AG_OK) {
			seterr(err, errlen, "DKIM signing d=%s s=%s: %s",
			    o->domain, o->selector, o->why);
		}
	}
	if (st != AG_OK) {
		for (i = 0; i < m->n; i++) {
			free(values[i]);
			values[i] = NULL;
		}
	}
	return st;
}

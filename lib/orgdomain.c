/*
 * orgdomain.c - organizational domains (RFC 7489 3.2) and identifier
 * alignment (RFC 7489 3.1) over libpsl.
 *
 * RFC 7489 3.2 step by step: (2) the labels of the domain, numbered from
 * the right; (3) the public suffix rule that matches the most labels, x;
 * (4) that suffix plus label x+1.  libpsl answers "is this name a public
 * suffix" by the list's own algorithm (wildcards, exceptions, and the
 * implicit "*" rule that makes any top label a suffix), so walking the
 * suffixes of the name from the longest down, the first public suffix is
 * the longest match, and the suffix one label longer is the answer.  Step
 * 4 has no label x+1 when the whole name is a public suffix; the name
 * itself is taken then, as OpenDMARC does, so that a policy published at
 * _dmarc.co.uk or _dmarc.localhost is still looked up at that name.
 *
 * What we add: the input goes through ag_domain_normalize() (so case and
 * a trailing dot never matter, and bad names are refused before libpsl
 * sees them), and a name whose top label is all digits is refused: that
 * is an IPv4 address or junk, and "2.1" as the organizational domain of
 * 192.0.2.1 would align unrelated addresses.
 *
 * Ownership: the handle owns the libpsl context it loaded (never the
 * built-in one) and a copy of the source name.  Thread-safe after open:
 * libpsl lookups only read the context (a binary search or a DAFSA walk).
 */
#include "orgdomain.h"

#include <errno.h>
#include <libpsl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "addr.h"
#include "log.h"

/* A rule of every real list (ICANN section since the list began). */
#define AG_PSL_PROBE "co.uk"
#define AG_PSL_BUILTIN "built-in"
/* Both sections of the list count (see orgdomain.h). */
#define AG_PSL_TYPES PSL_TYPE_ANY

struct ag_psl {
	psl_ctx_t *owned;	/* what we loaded; NULL for the built-in list */
	const psl_ctx_t *ctx;	/* what lookups use */
	char source[];		/* path or AG_PSL_BUILTIN */
};

/* Write FMT into ERR, if any. */
__attribute__((format(printf, 3, 4))) static void
say(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (err == NULL || errlen == 0) {
		return;
	}
	va_start(ap, fmt);
	(void)vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

/* Load FILE into *CTX, or AG_PERMFAIL with the reason in ERR. */
static ag_status
load(const char *file, psl_ctx_t **ctx, char *err, size_t errlen)
{
	char ebuf[128];
	FILE *fp;
	int e;

	*ctx = NULL;
	fp = fopen(file, "re");
	if (fp == NULL) {
		e = errno;
		say(err, errlen, "%s: %s", file, ag_strerror(e, ebuf,
		    sizeof(ebuf)));
		return AG_PERMFAIL;
	}
	*ctx = psl_load_fp(fp);
	(void)fclose(fp);
	if (*ctx == NULL) {
		say(err, errlen, "%s: not a public suffix list (libpsl "
		    "cannot read it)", file);
		return AG_PERMFAIL;
	}
	if (psl_is_public_suffix2(*ctx, AG_PSL_PROBE, AG_PSL_TYPES) != 1) {
		psl_free(*ctx);
		*ctx = NULL;
		say(err, errlen, "%s: not a public suffix list (no rule for "
		    "%s)", file, AG_PSL_PROBE);
		return AG_PERMFAIL;
	}
	return AG_OK;
}

/* Make the handle for CTX (owned unless the built-in list) from SOURCE. */
static ag_status
wrap(psl_ctx_t *owned, const psl_ctx_t *ctx, const char *source,
    struct ag_psl **out, char *err, size_t errlen)
{
	size_t n = strlen(source);
	struct ag_psl *p;

	if (n > SIZE_MAX - sizeof(*p) - 1 ||
	    (p = malloc(sizeof(*p) + n + 1)) == NULL) {
		psl_free(owned);
		say(err, errlen, "out of memory");
		return AG_NOMEM;
	}
	p->owned = owned;
	p->ctx = ctx;
	memcpy(p->source, source, n + 1);
	*out = p;
	return AG_OK;
}

/* Load the list: FILE, or Debian's files, or the built-in copy. */
ag_status
ag_psl_open(const char *file, struct ag_psl **out, char *err, size_t errlen)
{
	char why1[256], why2[256];
	const psl_ctx_t *builtin;
	psl_ctx_t *ctx;
	ag_status st;

	say(err, errlen, "%s", "");
	if (out == NULL) {
		say(err, errlen, "no handle");
		return AG_INVALID;
	}
	*out = NULL;
	if (file != NULL) {
		st = load(file, &ctx, err, errlen);
		if (st != AG_OK) {
			return st;
		}
		return wrap(ctx, ctx, file, out, err, errlen);
	}
	if (load(AG_PSL_DEFAULT_DAFSA, &ctx, why1, sizeof(why1)) == AG_OK) {
		return wrap(ctx, ctx, AG_PSL_DEFAULT_DAFSA, out, err, errlen);
	}
	if (load(AG_PSL_DEFAULT_DAT, &ctx, why2, sizeof(why2)) == AG_OK) {
		st = wrap(ctx, ctx, AG_PSL_DEFAULT_DAT, out, err, errlen);
		if (st == AG_OK) {
			say(err, errlen, "warning: %s; using %s", why1,
			    AG_PSL_DEFAULT_DAT);
		}
		return st;
	}
	builtin = psl_builtin();
	if (builtin == NULL) {
		say(err, errlen, "%s; %s; and libpsl has no built-in list",
		    why1, why2);
		return AG_PERMFAIL;
	}
	st = wrap(NULL, builtin, AG_PSL_BUILTIN, out, err, errlen);
	if (st == AG_OK) {
		say(err, errlen, "warning: %s; %s; using libpsl's built-in "
		    "list, which may be out of date (install Debian's "
		    "publicsuffix package)", why1, why2);
	}
	return st;
}

/* Free the handle and the list it loaded. */
void
ag_psl_free(struct ag_psl *p)
{
	if (p == NULL) {
		return;
	}
	psl_free(p->owned);
	free(p);
}

/* Where the list came from. */
const char *
ag_psl_source(const struct ag_psl *p)
{
	return p != NULL ? p->source : "";
}

/* Normalize DOMAIN into BUF; refuse an all-digit top label. */
static bool
normalize(const char *domain, char *buf, size_t bufsz)
{
	const char *top;

	if (domain == NULL ||
	    ag_domain_normalize(domain, buf, bufsz) != AG_OK) {
		return false;
	}
	top = strrchr(buf, '.');
	top = top != NULL ? top + 1 : buf;
	return top[strspn(top, "0123456789")] != '\0';
}

/* The organizational domain (RFC 7489 3.2) of DOMAIN into OUT. */
bool
ag_org_domain(const struct ag_psl *p, const char *domain, char *out,
    size_t outsz)
{
	char name[AG_ADDR_DOMAIN_MAX + 1];
	const char *s, *prev = NULL, *dot;
	size_t n;

	if (out == NULL || outsz == 0) {
		return false;
	}
	out[0] = '\0';
	if (p == NULL || !normalize(domain, name, sizeof(name))) {
		return false;
	}
	/* The first public suffix from the left is the longest (step 3). */
	for (s = name; psl_is_public_suffix2(p->ctx, s, AG_PSL_TYPES) != 1;
	    s = dot + 1) {
		dot = strchr(s, '.');
		if (dot == NULL) {
			break;	/* no rule at all: cannot happen with "*" */
		}
		prev = s;
	}
	s = prev != NULL ? prev : name;
	n = strlen(s);
	if (n >= outsz) {
		return false;
	}
	memcpy(out, s, n + 1);
	return true;
}

/* Strict or relaxed alignment of A and B (RFC 7489 3.1). */
bool
ag_dmarc_aligned(const struct ag_psl *p, const char *a, const char *b,
    bool strict)
{
	char x[AG_ADDR_DOMAIN_MAX + 1], y[AG_ADDR_DOMAIN_MAX + 1];

	if (strict) {
		return normalize(a, x, sizeof(x)) &&
		    normalize(b, y, sizeof(y)) && strcmp(x, y) == 0;
	}
	return ag_org_domain(p, a, x, sizeof(x)) &&
	    ag_org_domain(p, b, y, sizeof(y)) && strcmp(x, y) == 0;
}

/*
 * dkimtag.c - tag-lists (RFC 6376 3.2), as DKIM-Signature fields and DKIM
 * key records are written: "name=value; ..." with folding white space.
 * Split from lib/dkim.c.
 */
#include <ctype.h>
#include <string.h>
#include <strings.h>

#include "dkimtag.h"

static const char *
skip_fws(const char *p, const char *end)
{
	while (p < end && ag_is_fws(*p)) {
		p++;
	}
	return p;
}

/* One tag-spec at *P (before END): name and value, FWS trimmed. */
static const char *
tag_next(const char **pp, const char *end, struct ag_span *name,
    struct ag_span *val)
{
	const char *p = *pp;

	name->p = p;
	if (p >= end || !isalpha((unsigned char)*p)) {
		return "bad tag name";
	}
	while (p < end && (isalnum((unsigned char)*p) || *p == '_')) {
		p++;
	}
	name->len = (size_t)(p - name->p);
	p = skip_fws(p, end);
	if (p >= end || *p != '=') {
		return "tag without '='";
	}
	val->p = p = skip_fws(p + 1, end);
	for (; p < end && *p != ';'; p++) {
		unsigned char c = (unsigned char)*p;

		if (!ag_is_fws((char)c) && (c < 0x21 || c > 0x7e)) {
			return "bad character in a tag value";
		}
	}
	val->len = (size_t)(p - val->p);
	while (val->len > 0 && ag_is_fws(val->p[val->len - 1])) {
		val->len--;
	}
	*pp = p;
	return NULL;
}

/*
 * Walk the tag-list S (LEN bytes), calling FN for each tag; NULL, or what
 * is wrong with it.  Duplicate tag names make the whole list invalid
 * (RFC 6376 3.2).
 */
const char *
ag_taglist_walk(const char *s, size_t len, ag_tag_fn fn, void *arg)
{
	struct ag_span seen[AG_TAGLIST_MAX_TAGS];
	const char *p = s, *end = s + len, *why;
	size_t n = 0;

	for (;;) {
		struct ag_span name, val;

		if ((p = skip_fws(p, end)) >= end) {
			return NULL;	/* empty, or after a final ';' */
		}
		if ((why = tag_next(&p, end, &name, &val)) != NULL) {
			return why;
		}
		for (size_t i = 0; i < n; i++) {
			if (seen[i].len == name.len &&
			    memcmp(seen[i].p, name.p, name.len) == 0) {
				return "duplicate tag";
			}
		}
		if (n == AG_TAGLIST_MAX_TAGS) {
			return "too many tags";
		}
		seen[n++] = name;
		fn(arg, name, val);
		if (p < end) {
			p++;	/* the ';' */
		}
	}
}

bool
ag_span_is(struct ag_span s, const char *lit)
{
	return s.len == strlen(lit) && strncasecmp(s.p, lit, s.len) == 0;
}

/* Is S base64 with FWS between the characters (RFC 6376 2.6)? */
bool
ag_is_base64(struct ag_span s)
{
	size_t pad = 0;

	for (size_t i = 0; i < s.len; i++) {
		unsigned char c = (unsigned char)s.p[i];

		if (ag_is_fws((char)c)) {
			continue;
		}
		if (c == '=') {
			if (++pad > 2) {
				return false;
			}
			continue;
		}
		if (pad > 0 || !(isalnum(c) || c == '+' || c == '/')) {
			return false;
		}
	}
	return true;
}

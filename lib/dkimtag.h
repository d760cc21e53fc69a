/*
 * dkimtag.h - reading tag-lists (RFC 6376 3.2): DKIM-Signature fields and
 * DKIM key records.  Private to lib/.
 */
#ifndef AG_DKIMTAG_H
#define AG_DKIMTAG_H

#include <stdbool.h>
#include <stddef.h>

#define AG_TAGLIST_MAX_TAGS 64	/* more make the list invalid */

/* LEN bytes at P, not NUL-terminated. */
struct ag_span {
	const char *p;
	size_t len;
};

typedef void (*ag_tag_fn)(void *arg, struct ag_span name,
    struct ag_span val);

/* Folding white space, as tag-lists have it (RFC 6376 2.8). */
static inline bool
ag_is_fws(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/*
 * Walk the tag-list S (LEN bytes), calling FN for each tag with its name
 * and its value (folding white space around them trimmed); NULL, or what
 * is wrong with the list (a bad name or character, a tag without '=',
 * a duplicate name, more than AG_TAGLIST_MAX_TAGS tags).  FN may have
 * been called for the tags before the fault.
 */
const char *ag_taglist_walk(const char *s, size_t len, ag_tag_fn fn,
    void *arg);

/* Is S the literal LIT, case ignored? */
bool ag_span_is(struct ag_span s, const char *lit);

/* Is S base64 with folding white space between the characters? */
bool ag_is_base64(struct ag_span s);

#endif

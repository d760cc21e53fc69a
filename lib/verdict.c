/*
 * verdict.c - the answer of a phase: an action, SMTP codes and reply text.
 *
 * A verdict is a plain value with its text inline; ag_verdict_set() runs
 * the text through ag_reply_sanitize() so that whatever reaches
 * smfi_setreply() has no line breaks, no control or 8-bit bytes, and
 * every '%' doubled (libmilter passes the text through a printf).
 *
 * Ownership: nothing is allocated; REASON is a static string the verdict
 * points at.  Thread-safe: no shared state.
 */
#include "verdict.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

/* Room to format a reply before it is sanitized and cut. */
#define AG_VERDICT_FMT_MAX (2 * AG_REPLY_TEXT_MAX)

/* A verdict that lets the phase continue. */
void
ag_verdict_continue(struct ag_verdict *v)
{
	if (v == NULL) {
		return;
	}
	memset(v, 0, sizeof(*v));
	v->action = AG_ACT_CONTINUE;
}

/* Copy SRC into DST (size DSTSZ), cut to fit; NULL gives "". */
static void
verdict_copy(char *dst, size_t dstsz, const char *src)
{
	size_t len;

	len = src != NULL ? strnlen(src, dstsz - 1) : 0;
	if (len > 0) {
		memcpy(dst, src, len);
	}
	dst[len] = '\0';
}

/* Set V to ACTION with codes, a reason tag and a sanitised text. */
void
ag_verdict_set(struct ag_verdict *v, enum ag_action action,
    const char *rcode, const char *xcode, const char *reason,
    const char *fmt, ...)
{
	char text[AG_VERDICT_FMT_MAX + 1];
	va_list ap;
	int n;

	if (v == NULL) {
		return;
	}
	memset(v, 0, sizeof(*v));
	v->action = action;
	v->reason = reason;
	verdict_copy(v->rcode, sizeof(v->rcode), rcode);
	verdict_copy(v->xcode, sizeof(v->xcode), xcode);
	text[0] = '\0';
	if (fmt != NULL) {
		va_start(ap, fmt);
		n = vsnprintf(text, sizeof(text), fmt, ap);
		va_end(ap);
		if (n < 0) {
			text[0] = '\0';
		}
	}
	ag_reply_sanitize(v->text, sizeof(v->text), text);
}

/* True for every action but CONTINUE: the phase has its answer. */
bool
ag_verdict_is_final(const struct ag_verdict *v)
{
	return v != NULL && v->action != AG_ACT_CONTINUE;
}

/* Name of an action for logs and listings; "unknown" out of range. */
const char *
ag_action_name(enum ag_action a)
{
	switch (a) {
	case AG_ACT_CONTINUE:
		return "continue";
	case AG_ACT_ACCEPT:
		return "accept";
	case AG_ACT_TEMPFAIL:
		return "tempfail";
	case AG_ACT_REJECT:
		return "reject";
	case AG_ACT_DISCARD:
		return "discard";
	case AG_ACT_QUARANTINE:
		return "quarantine";
	}
	return "unknown";
}

/* A configured failure action: "tempfail", "accept" or "reject". */
int
ag_action_parse(const char *name, enum ag_action *out)
{
	static const struct {
		const char *name;
		enum ag_action action;
	} names[] = {
		{ "tempfail", AG_ACT_TEMPFAIL },
		{ "accept", AG_ACT_ACCEPT },
		{ "reject", AG_ACT_REJECT },
	};
	size_t i;

	if (name == NULL || out == NULL) {
		return -1;
	}
	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		if (strcasecmp(name, names[i].name) == 0) {
			*out = names[i].action;
			return 0;
		}
	}
	return -1;
}

/* Make SRC safe as reply text; returns the length written. */
size_t
ag_reply_sanitize(char *dst, size_t dstsz, const char *src)
{
	const unsigned char *s;
	size_t limit, len = 0;
	unsigned char c;

	if (dst == NULL || dstsz == 0) {
		return 0;
	}
	limit = dstsz - 1;
	if (limit > AG_REPLY_TEXT_MAX) {
		limit = AG_REPLY_TEXT_MAX;
	}
	s = (const unsigned char *)(src != NULL ? src : "");
	for (; *s != '\0'; s++) {
		c = *s;
		if (c < 0x20 || c == 0x7f) {
			c = ' ';
		} else if (c >= 0x80) {
			c = '?';
		}
		if (c == ' ' && len == 0) {
			continue;	/* no leading spaces after the codes */
		}
		if (len + (c == '%' ? 2 : 1) > limit) {
			break;
		}
		dst[len++] = (char)c;
		if (c == '%') {
			dst[len++] = '%';
		}
	}
	while (len > 0 && dst[len - 1] == ' ') {
		len--;
	}
	dst[len] = '\0';
	return len;
}

/*
 * verdict.h - what a phase answers: an action plus SMTP reply.
 *
 * A verdict is a plain value (no allocation): the text is stored inline,
 * already sanitised for smfi_setreply().  Thread-safe: no shared state.
 */
#ifndef AG_VERDICT_H
#define AG_VERDICT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* RFC 5321 4.5.3.1.5: a reply line is at most 512 octets with the code. */
#define AG_REPLY_TEXT_MAX 400

enum ag_action {
	AG_ACT_CONTINUE = 0,	/* no objection: go on to the next phase */
	AG_ACT_ACCEPT,		/* accept; no further checks this message */
	AG_ACT_TEMPFAIL,	/* 4xx */
	AG_ACT_REJECT,		/* 5xx */
	AG_ACT_DISCARD,		/* accept and drop silently */
	AG_ACT_QUARANTINE	/* accept into the MTA's hold queue */
};

struct ag_verdict {
	enum ag_action action;
	char rcode[4];		/* "552"; empty for CONTINUE/ACCEPT */
	char xcode[12];		/* "5.3.4" (RFC 3463) */
	char text[AG_REPLY_TEXT_MAX + 1]; /* sanitised reply text */
	int64_t rule_id;	/* rule that decided; 0 = none/builtin */
	const char *reason;	/* static short tag for the log: "size", ... */
	bool dry_run;		/* decided, but only logged: action is CONTINUE */
};

/* A verdict that lets the phase continue. */
void ag_verdict_continue(struct ag_verdict *v);

/*
 * Set V to ACTION with codes RCODE ("552") and XCODE ("5.3.4") and a text
 * made from FMT; the formatted text is passed through ag_reply_sanitize().
 * REASON is a static string for logs.  Every other field is reset
 * (rule_id 0, dry_run false): set them after this call.
 */
void ag_verdict_set(struct ag_verdict *v, enum ag_action action,
    const char *rcode, const char *xcode, const char *reason,
    const char *fmt, ...) __attribute__((format(printf, 6, 7)));

/* True when the verdict ends the transaction or the recipient. */
bool ag_verdict_is_final(const struct ag_verdict *v);

/* "continue", "accept", "tempfail", "reject", "discard", "quarantine" */
const char *ag_action_name(enum ag_action a);

/*
 * Configured failure actions (On-DatabaseError ...): "tempfail",
 * "accept" or "reject" (case-insensitive).  Returns 0 and sets *out, or
 * -1 for an unknown name.
 */
int ag_action_parse(const char *name, enum ag_action *out);

/*
 * Make SRC safe as SMTP reply text for smfi_setreply(): CR, LF and other
 * control characters become a space, bytes >= 0x80 become '?', '%'
 * becomes "%%" (libmilter formats the text), runs of spaces are kept;
 * the result is cut to fit DSTSZ-1 bytes (and AG_REPLY_TEXT_MAX) without
 * splitting a "%%".  SRC NULL gives "".  Returns the length written.
 */
size_t ag_reply_sanitize(char *dst, size_t dstsz, const char *src);

#endif

/*
 * dkimlen.h - the length of a message body under each DKIM body
 * canonicalization (RFC 6376 3.4.3 simple, 3.4.4 relaxed), counted as the
 * body streams, so that a signature's l= can be compared with the whole
 * canonical body: libopendkim stops counting at l=, and a pass that leaves
 * body text unsigned must not look like one that covers all of it.
 *
 * A plain value: no allocation, no shared state; one per message.
 */
#ifndef AG_DKIMLEN_H
#define AG_DKIMLEN_H

#include <stdbool.h>
#include <stddef.h>

struct ag_dkimlen {
	unsigned long long raw;		/* body bytes so far */
	unsigned long long s_done;	/* simple: through the last non-empty line */
	unsigned long long s_line;	/* simple: bytes of the current line */
	unsigned long long s_blank;	/* simple: empty lines after s_done */
	unsigned long long r_done;	/* relaxed: the same three, */
	unsigned long long r_line;	/* white space reduced and */
	unsigned long long r_blank;	/* trailing white space dropped */
	bool cr;			/* the last byte was a CR */
	bool wsp;			/* relaxed: white space pending in the line */
};

/* Count LEN body bytes of BUF into L (zeroed before the first call). */
void ag_dkimlen_add(struct ag_dkimlen *l, const unsigned char *buf, size_t len);

/* The canonical length of the body counted so far, relaxed or simple. */
unsigned long long ag_dkimlen_get(const struct ag_dkimlen *l, bool relaxed);

#endif

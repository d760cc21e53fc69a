/*
 * dkimlen.c - canonical body lengths for DKIM l= (see dkimlen.h).
 *
 * Simple (RFC 6376 3.4.3): the body up to its last non-empty line, every
 * line ending in CRLF; an empty body is one CRLF.  Relaxed (3.4.4): the
 * same after white space at line ends is dropped and every other run of
 * WSP becomes one SP; an empty body stays empty.  In both, a last line
 * without its CRLF gets one.  A CR not followed by LF is an ordinary byte
 * of its line, as is a LF without its CR.
 */
#include "dkimlen.h"

/* One more byte C of the current line. */
static void
line_byte(struct ag_dkimlen *l, unsigned char c)
{
	l->s_line++;
	if (c == ' ' || c == '\t') {
		l->wsp = true;
		return;
	}
	l->r_line += l->wsp ? 2 : 1;	/* the SP of a pending run, then C */
	l->wsp = false;
}

/* The current line ended (with its CRLF, or at the end of the body). */
static void
line_end(struct ag_dkimlen *l)
{
	if (l->s_line == 0) {
		l->s_blank++;
	} else {
		l->s_done += 2 * l->s_blank + l->s_line + 2;
		l->s_blank = 0;
	}
	if (l->r_line == 0) {
		l->r_blank++;
	} else {
		l->r_done += 2 * l->r_blank + l->r_line + 2;
		l->r_blank = 0;
	}
	l->s_line = l->r_line = 0;
	l->wsp = false;
}

void
ag_dkimlen_add(struct ag_dkimlen *l, const unsigned char *buf, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		unsigned char c = buf[i];

		if (l->cr && c == '\n') {
			l->cr = false;
			line_end(l);
			continue;
		}
		if (l->cr) {
			line_byte(l, '\r');	/* a bare CR */
		}
		l->cr = c == '\r';
		if (!l->cr) {
			line_byte(l, c);
		}
	}
	l->raw += len;
}

unsigned long long
ag_dkimlen_get(const struct ag_dkimlen *l, bool relaxed)
{
	struct ag_dkimlen end = *l;

	if (end.cr) {
		line_byte(&end, '\r');
	}
	if (end.s_line > 0) {
		line_end(&end);		/* the CRLF a last line gets */
	}
	if (relaxed) {
		return end.r_done;
	}
	return end.s_done > 0 ? end.s_done : 2;
}

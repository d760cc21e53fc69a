/*
 * msgfile.h - read a stored RFC 5322 message and hand it out in milter
 * order: one call per header field, then the body in bounded chunks.
 *
 * Used by the offline mode (authgate --test-message) and the fuzzers, so
 * that a stored message takes the same path through lib/session.c as one
 * from the MTA.  Line ends are normalised to CRLF as an MTA passes them;
 * header values are everything after the colon, the leading space and the
 * folding ("\r\n\t...") kept, as libmilter delivers them with
 * SMFIP_HDR_LEADSPC (set ag_conn_set_leadspc()).  The body is never held
 * whole.
 *
 * Thread safety: no shared state.
 */
#ifndef AG_MSGFILE_H
#define AG_MSGFILE_H

#include <stddef.h>
#include <stdio.h>

#include "status.h"

/* Bounds: a header field longer than this is an error (RFC 5322 2.1.1
 * allows 998 per line; folded fields may be longer). */
#define AG_MSGFILE_FIELD_MAX (256 * 1024)
#define AG_MSGFILE_CHUNK 65536	/* body chunk size, as MTAs use */

struct ag_msgfile_cb {
	/* return nonzero to stop reading (e.g. the message was rejected) */
	int (*header)(void *arg, const char *name, const char *value);
	int (*eoh)(void *arg);
	int (*body)(void *arg, const unsigned char *buf, size_t len);
	void *arg;
};

/*
 * Read FP to the end, calling CB.  A line in the header section without
 * a colon ends the headers (it becomes body, as MTAs treat it).  Returns
 * AG_OK, AG_INVALID (a field over the bound: ERR says which line), or
 * AG_NOMEM.
 */
ag_status ag_msgfile_read(FILE *fp, const struct ag_msgfile_cb *cb,
    char *err, size_t errlen);

#endif

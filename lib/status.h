/*
 * status.h - the one status type every lib/ function returns.
 *
 * Temporary and permanent failures are always distinct: a caller maps
 * AG_TEMPFAIL and AG_NOMEM to a 4xx answer (or the configured failure
 * action), never to a 5xx.  Detail text lives in the object that failed
 * (e.g. ag_store_errstr()), never in a global.
 */
#ifndef AG_STATUS_H
#define AG_STATUS_H

typedef enum ag_status {
	AG_OK = 0,
	AG_NOTFOUND,	/* lookup found nothing: not an error */
	AG_TEMPFAIL,	/* try again later: DNS timeout, database busy */
	AG_PERMFAIL,	/* will not work by retrying */
	AG_NOMEM,	/* out of memory: a temporary failure */
	AG_INVALID	/* bad input: syntax, range */
} ag_status;

/* Short lower-case name of a status, for logs ("ok", "tempfail", ...). */
const char *ag_status_str(ag_status st);

#endif

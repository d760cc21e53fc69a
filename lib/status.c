/*
 * status.c - names for the ag_status values, for log lines.
 *
 * Ownership: the returned strings are static.  Thread-safe: no state.
 */
#include "status.h"

/* Short lower-case name of ST; "unknown" for a value outside the enum. */
const char *
ag_status_str(ag_status st)
{
	switch (st) {
	case AG_OK:
		return "ok";
	case AG_NOTFOUND:
		return "notfound";
	case AG_TEMPFAIL:
		return "tempfail";
	case AG_PERMFAIL:
		return "permfail";
	case AG_NOMEM:
		return "nomem";
	case AG_INVALID:
		return "invalid";
	}
	return "unknown";
}

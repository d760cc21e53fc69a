/*
 * control.h - the requests authgatectl sends to the running daemon over
 * its control socket (counters live in the daemon's memory or in Redis,
 * and only the daemon knows which).
 *
 * A request is one line of TAB-separated fields:
 *     ping
 *     counters list RULE KEY FORMAT      RULE 0: any; KEY "": any
 *     counters reset KEY FORMAT          FORMAT text or json
 * The answer is "OK" or "ERR message" on the first line, then the body.
 */
#ifndef AG_CONTROL_H
#define AG_CONTROL_H

#include <stdio.h>

#include "engine.h"

#define AG_CONTROL_LINE_MAX 2048	/* a request, with its newline */

/* Answer LINE (without its newline) on OUT. */
void ag_control_handle(struct ag_engine *e, const char *line, FILE *out);

#endif

/*
 * ctlsock.h - the daemon's control socket: a unix socket where
 * authgatectl asks for counters (lib/control.c answers).
 */
#ifndef AG_FILTER_CTLSOCK_H
#define AG_FILTER_CTLSOCK_H

#include "engine.h"

#include <stdbool.h>

/* Bind PATH (an old socket there is replaced), before privileges are
 * dropped.  Failure is logged and false: the daemon runs on without. */
bool ag_control_bind(const char *path);

/* Serve requests on the bound socket in a thread of its own. */
void ag_control_start(struct ag_engine *e);

/* Stop serving, and remove the socket. */
void ag_control_stop(void);

#endif

/*
 * ctlsock.h - the daemon's control socket: a unix socket where
 * authgatectl asks for counters (lib/control.c answers).
 */
#ifndef AG_FILTER_CTLSOCK_H
#define AG_FILTER_CTLSOCK_H

#include "engine.h"

/* Bind PATH (an old socket there is replaced) and serve requests in a
 * thread of its own.  Failure is logged; the daemon runs on without. */
void ag_control_start(struct ag_engine *e, const char *path);

/* Stop serving, and remove the socket. */
void ag_control_stop(void);

#endif

/*
 * milter.h - the libmilter glue: callbacks that turn MTA events into
 * lib/session.c calls and verdicts into milter replies.
 */
#ifndef AG_FILTER_MILTER_H
#define AG_FILTER_MILTER_H

#include "engine.h"

/* Register the filter with libmilter (before smfi_opensocket). */
int ag_milter_register(void);

/* The engine the callbacks use; set before smfi_main, outlives it. */
void ag_milter_set_engine(struct ag_engine *e);

#endif

/*
 * offline.h - authgate --test-message: run one stored message through the
 * same lib/session.c pipeline the daemon uses and print what it decides.
 */
#ifndef AG_FILTER_OFFLINE_H
#define AG_FILTER_OFFLINE_H

#include <stddef.h>

#include "config.h"

#define AG_OFFLINE_MAX_RCPT 1000

struct ag_offline {
	const char *message;
	const char *client_ip;
	const char *helo;
	const char *mail_from;
	const char *rcpt[AG_OFFLINE_MAX_RCPT];
	size_t nrcpt;
	const char *auth;
};

/*
 * Run the message; prints one line per phase and the header edits.
 * Returns the exit status: 0 accept, 1 reject, 2 tempfail, 3 usage or
 * input error (e.g. the file cannot be read).
 */
int ag_offline_run(const struct ag_offline *o, struct ag_config *cfg);

#endif

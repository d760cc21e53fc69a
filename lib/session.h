/*
 * session.h - per-connection and per-message state, the order of the
 * checks, and the verdict of each SMTP phase.
 *
 * One struct ag_conn per SMTP connection; it owns at most one message
 * (transaction) at a time.  The MTA glue (filter/milter.c), the offline
 * mode (authgate --test-message) and the fuzzers all drive the same calls
 * in SMTP order:
 *
 *   ag_conn_new -> helo* -> (mail -> rcpt* -> header* -> eoh -> body* ->
 *   eom | abort)* -> ag_conn_free
 *
 * Each phase fills a verdict.  A final verdict at MAIL FROM ends the
 * transaction; at RCPT TO it refuses that recipient only.  Calls out of
 * order (e.g. eom without MAIL) are tolerated and answered with a
 * protocol-error tempfail, never a crash.
 *
 * Thread safety: a connection is used by one thread at a time.
 */
#ifndef AG_SESSION_H
#define AG_SESSION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "engine.h"
#include "verdict.h"

/* Bounds on what one message may make us hold (documented in authgate.8). */
#define AG_SESSION_MAX_RCPTS_SEEN 100000

struct ag_conn_info {
	const struct sockaddr *sa;	/* connect callback address, may be NULL */
	const char *client_addr;	/* {client_addr} macro, may be NULL */
	const char *client_name;	/* {client_name} or the hostname arg */
	const char *daemon_name;	/* {daemon_name} */
	const char *mta_name;		/* j */
};

enum ag_edit_op { AG_EDIT_INSERT, AG_EDIT_CHANGE, AG_EDIT_DELETE };

/* A header change to make at end of message. */
struct ag_edit {
	enum ag_edit_op op;
	int index;		/* INSERT: position (0 = top); CHANGE/DELETE: nth (1-based) of NAME */
	char *name;
	char *value;		/* NULL for DELETE */
};

struct ag_conn;

/* Start a connection; V is the connect verdict. NULL on out of memory. */
struct ag_conn *ag_conn_new(struct ag_engine *e,
    const struct ag_conn_info *info, struct ag_verdict *v);
void ag_conn_free(struct ag_conn *c);	/* logs an unfinished message; NULL ok */

/*
 * Header values keep the whitespace after the colon (the MTA agreed to
 * SMFIP_HDR_LEADSPC; the offline mode reads them so).  Without it the
 * MTA took one space away and the session puts it back: DKIM hashes
 * exactly what follows the colon.  NULL C is fine.
 */
void ag_conn_set_leadspc(struct ag_conn *c, bool on);

/* Macros that arrive at several phases. NULL or "" is ignored. */
void ag_conn_set_queue_id(struct ag_conn *c, const char *qid);
void ag_conn_set_auth(struct ag_conn *c, const char *authen);

void ag_conn_helo(struct ag_conn *c, const char *helo, struct ag_verdict *v);

/* ARGV as libmilter passes it: argv[0] the address, then ESMTP params. */
void ag_conn_mail(struct ag_conn *c, char **argv, struct ag_verdict *v);
void ag_conn_rcpt(struct ag_conn *c, char **argv, struct ag_verdict *v);

void ag_conn_header(struct ag_conn *c, const char *name, const char *value,
    struct ag_verdict *v);
void ag_conn_eoh(struct ag_conn *c, struct ag_verdict *v);
void ag_conn_body(struct ag_conn *c, const unsigned char *buf, size_t len,
    struct ag_verdict *v);

/*
 * End of message: V is the final verdict; the header edits to apply (when
 * V lets the message through) are returned in *EDITS / *NEDITS, owned by
 * the connection until the next transaction or ag_conn_free.
 */
void ag_conn_eom(struct ag_conn *c, struct ag_verdict *v,
    const struct ag_edit **edits, size_t *nedits);

/* Messages (transactions) in progress in the process, for a graceful
 * stop that waits for them but not for idle connections. */
unsigned ag_session_in_flight(void);

/* The MTA aborted the transaction (RSET, lost connection mid-message). */
void ag_conn_abort(struct ag_conn *c);

#endif

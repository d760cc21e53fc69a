/*
 * config_int.h - what lib/config.c (the keyword table, loading, the API)
 * and lib/config_value.c (parsing, printing and freeing one value of each
 * type) share.  Private to lib/.
 */
#ifndef AG_CONFIG_INT_H
#define AG_CONFIG_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "config.h"

#define AG_CONFIG_LINE_MAX 4096		/* bytes per line, without CR LF */
#define AG_CONFIG_FILE_MAX (1024 * 1024)	/* a config file, in bytes */
#define AG_CONFIG_NAME_MAX 255		/* user and group names in UserID */
/*
 * RFC 8601 2.5: authserv-id is a "value" (RFC 2045 token or quoted
 * string); only the token-like form is accepted, so that it never needs
 * quoting in the header.  255 bounds it like a domain name (RFC 1035).
 */
#define AG_AUTHSERV_ID_MAX 255
#define AG_HOSTNAME_MAX 253		/* RFC 1035 2.3.4, in text form */
#define AG_HOST_LABEL_MAX 63		/* RFC 1035 2.3.4 */
#define AG_QUOTE_MAX 64			/* value bytes shown in a message */

enum kw_type {
	KW_SOCKET,	/* char *: unix:PATH, inet:PORT@ADDR, inet6:PORT@ADDR */
	KW_PATH,	/* char *: any non-empty path */
	KW_ABSPATH,	/* char *: an absolute path */
	KW_AUTHSERV,	/* char *: RFC 8601 authserv-id token */
	KW_USER,	/* char *: user[:group] */
	KW_MODE,	/* mode_t: octal 0..0777 */
	KW_LEVEL,	/* int: syslog priority by name */
	KW_FACILITY,	/* int: syslog facility by name */
	KW_CIDRS,	/* struct ag_cidr_list, or "none" */
	KW_BOOL,	/* bool: yes/no/true/false/1/0 */
	KW_ACTION,	/* enum ag_action: tempfail|accept */
	KW_UINT,	/* unsigned within [min, max] */
	KW_SERVERS,	/* char *: DNS forwarders ADDR[@PORT] ... */
	KW_DISP,	/* int (enum ag_disp): accept|tag|tempfail|reject */
	KW_IDLIST,	/* char *: authserv-ids, stored space-separated */
	KW_RATEBACKEND,	/* char *: "local" or a Redis URL */
	KW_CHOICE,	/* int: the index of one of the keyword's names */
	KW_LISTEN	/* char *: IPV4:PORT or [IPV6]:PORT */
};

#define KW_F_DEF_HOSTNAME 0x1	/* default is the host name */

struct kw {
	const char *name;
	enum kw_type type;
	const char *def;	/* default text; NULL: unset */
	size_t off;		/* offsetof(struct ag_config, field) */
	unsigned min, max;	/* bounds for KW_UINT */
	unsigned flags;
	const char *doc;
	const char *const *names; /* KW_CHOICE: NULL-terminated, by value */
};

#define QUOTE_BUFSZ (AG_QUOTE_MAX * 4 + 8)

/* What each type does: parse a value, print it, free it (or NULL). */
struct kw_ops {
	ag_status (*parse)(const struct kw *, const char *, void *, char *,
	    size_t);
	void (*dump)(const struct kw *, const void *, FILE *);
	void (*release)(void *);
	size_t size;	/* of the field in struct ag_config */
};

/* Indexed by enum kw_type. */
extern const struct kw_ops ag_kw_ops[];

/* S for a message: printable ASCII, '"' and '\\' escaped, the rest as
 * \xHH, cut after AG_QUOTE_MAX input bytes.  Returns DST. */
char *ag_config_quote(char *dst, size_t dstsz, const char *s);

/* Is S an authserv-id we accept (a token, at most AG_AUTHSERV_ID_MAX)? */
bool ag_config_authserv_ok(const char *s);

#endif

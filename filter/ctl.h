/*
 * ctl.h - what the parts of authgatectl share: the tool's state, argument
 * handling, output escaping and error reporting (filter/authgatectl.c),
 * used by the verbs kept in files of their own (filter/ctl_check.c).
 */
#ifndef AG_FILTER_CTL_H
#define AG_FILTER_CTL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include "config.h"
#include "policy.h"
#include "store.h"

enum { CTL_OK = 0, CTL_FAIL = 1, CTL_USAGE = 2 };

#define CTL_COMMENT_MAX 1024	/* bytes in a rule comment */
#define CTL_MAX_RCPTS 1000	/* --rcpt arguments to check */
#define CTL_BODY_CHUNK 65536	/* body bytes per call when checking size */

struct ctl {
	const char *conffile;	/* -c, or NULL for the default */
	const char *dbpath;	/* -d, or NULL for the config's Database */
	bool json;
	struct ag_config *cfg;
};

/* The argument vector of a verb, consumed left to right. */
struct args {
	int argc;
	char **argv;
	int i;
};

/* A value option kept as a string at OFF in a verb's option struct. */
struct optdef {
	const char *name;
	size_t off;
};

#define NELEM(x) (sizeof(x) / sizeof((x)[0]))

/* Print "authgatectl: MESSAGE" on stderr; returns STATUS. */
int ctl_err(int status, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* Text with control characters and bad UTF-8 escaped; returns the width. */
size_t put_text(FILE *fp, const char *s);
/* S as a JSON string (NULL is null). */
void put_json(FILE *fp, const char *s);
/* A limit as JSON: a number or null. */
void put_json_limit(FILE *fp, int64_t v);
/* T (Unix seconds) as "YYYY-MM-DDTHH:MM:SSZ" in BUF; returns BUF. */
const char *ctl_iso_time(int64_t t, char *buf, size_t bufsz);
/* A byte count as an administrator writes it: "10M", "512k", "1000". */
const char *format_bytes(char *buf, size_t bufsz, int64_t v);

/* Option NAME with a value: 1 taken, 0 not this option, -1 error. */
int opt_value(struct args *a, const char *name, const char **val);
/* Flag NAME: consumed and true, or false. */
bool opt_flag(struct args *a, const char *name);
/* Any option of DEFS, stored into BASE: 1 taken, 0 not, -1 error. */
int opt_table(struct args *a, const struct optdef *defs, size_t n, void *base);

/* Open the database and read every rule; a CTL_* status. */
int ctl_load_policy(struct ctl *c, struct ag_store **sp, struct ag_policy **pp);

/* The verbs in files of their own. */
int cmd_check(struct ctl *c, struct args *a);
int cmd_counters(struct ctl *c, struct args *a);	/* ctl_counters.c */
int cmd_sign(struct ctl *c, struct args *a);		/* ctl_sign.c */
int cmd_key(struct ctl *c, struct args *a);		/* ctl_key.c */

/* With UserID set and run as root: the daemon's user and group, else
 * -1 and -1; a CTL_* status (ctl_key.c). */
int ctl_daemon_owner(const struct ctl *c, uid_t *uid, gid_t *gid);

/* Open the database (not creating it) for a verb; a CTL_* status. */
int ctl_open_store(struct ctl *c, struct ag_store **out);
int cmd_dmarc_report(struct ctl *c, struct args *a);	/* ctl_report.c */
int cmd_report(struct ctl *c, struct args *a);		/* ctl_msgreport.c */

#endif

/*
 * config.h - authgate.conf: parsing and validation into an immutable,
 * reference-counted snapshot.
 *
 * The file is keyword/value lines in the style of opendkim.conf:
 *     # comment
 *     Keyword   value ...
 * Keywords are case-insensitive; each may appear once; unknown keywords
 * are errors.  The table of keywords (name, type, default, bounds, doc)
 * lives in config.c and is the single source for parsing, `authgate -n`
 * and the man-page test.
 *
 * Thread safety: a loaded config is never modified; ag_config_ref() and
 * ag_config_unref() may be called from any thread.
 */
#ifndef AG_CONFIG_H
#define AG_CONFIG_H

#include <stdbool.h>
#include <stdio.h>
#include <sys/types.h>

#include "addr.h"
#include "spf.h"
#include "status.h"
#include "verdict.h"

#define AG_CONFIG_DEFAULT_FILE "/etc/authgate/authgate.conf"
#define AG_CONFIG_DEFAULT_SOCKET "unix:/run/authgate/authgate.sock"
#define AG_CONFIG_DEFAULT_DATABASE "/var/lib/authgate/authgate.db"

/* On-RateBackendError: what a decision does when Redis fails. */
enum ag_rate_fallback {
	AG_RB_LOCAL = 0,	/* count in the local engine meanwhile */
	AG_RB_TEMPFAIL,		/* 451 4.3.0 */
	AG_RB_ACCEPT		/* do not count */
};

#define AG_CONFIG_DEFAULT_CONTROL "/run/authgate/control.sock"

/* DMARCQuarantine and On-DMARCFromError (KW_CHOICE: by index). */
enum ag_dmarc_quarantine { AG_DMARC_QUAR_HOLD = 0, AG_DMARC_QUAR_TAG };
enum ag_dmarc_fromerr { AG_DMARC_FROMERR_REJECT = 0, AG_DMARC_FROMERR_PERMERROR };

struct ag_config {
	char *file;		/* path read, or NULL for embedded defaults */
	char *socket;		/* Socket: unix:PATH, inet:PORT@ADDR, inet6:PORT@ADDR */
	char *database;		/* Database: SQLite file */
	char *authserv_id;	/* AuthservID: default the host name */
	char *user_id;		/* UserID: user[:group], NULL = stay as started */
	mode_t umask;		/* UMask: default 0007 */
	char *pid_file;		/* PidFile: NULL = none */
	int log_level;		/* LogLevel: syslog priority, default LOG_INFO */
	int log_facility;	/* LogFacility: default LOG_MAIL */
	struct ag_cidr_list trusted; /* TrustedNetworks: default 127.0.0.0/8, ::1 */
	bool dry_run;		/* DryRun: decide and log, accept everything */
	enum ag_action on_database_error; /* On-DatabaseError: tempfail|accept */
	enum ag_action on_internal_error; /* On-InternalError: tempfail|accept */
	unsigned policy_check_interval; /* PolicyCheckInterval: seconds, default 2 */
	unsigned milter_timeout; /* MilterTimeout: ms the MTA may stay silent */
	unsigned database_timeout; /* DatabaseTimeout: ms to wait for a lock, default 2000 */
	char *dns_servers;	/* DNSServer: "ADDR[@PORT] ..."; NULL = resolv.conf */
	unsigned dns_timeout;	/* DNSTimeout: ms per query, default 5000 */
	unsigned spf_timeout;	/* SPFTimeout: ms per evaluation, default 15000 */
	bool spf_check;		/* SPFCheck: default yes */
	bool spf_check_helo;	/* SPFCheckHelo: default yes */
	int spf_disp[AG_SPF_NRESULTS]; /* On-SPF<Result>: an enum ag_disp each */
	bool dkim_verify;	/* DKIMVerify: default yes */
	unsigned dkim_max_sigs;	/* DKIMMaxSignatures: default 5 */
	unsigned dkim_timeout;	/* DKIMTimeout: ms for a message's key lookups */
	enum ag_action on_dkim_temperror; /* On-DKIMTemperror: tempfail|accept */
	char *authserv_strip;	/* AuthservIDStrip: "id id ..." or NULL */
	char *rate_backend;	/* RateBackend: "local" or a Redis URL */
	unsigned rate_backend_timeout; /* RateBackendTimeout: ms, default 250 */
	enum ag_rate_fallback on_rate_backend_error; /* On-RateBackendError */
	unsigned rate_max_keys;	/* RateMaxKeys: default 1000000 */
	unsigned rate_checkpoint_interval; /* RateCheckpointInterval: s, 30 */
	char *control_socket;	/* ControlSocket: NULL: derived */
	bool dkim_sign;		/* DKIMSign: default yes */
	int on_sign_error;	/* On-SignError: 0 tempfail, 1 accept */
	bool dmarc_check;	/* DMARCCheck: default yes */
	int dmarc_enforce;	/* DMARCEnforce: an enum ag_dmarc_policy cap */
	enum ag_dmarc_quarantine dmarc_quarantine; /* DMARCQuarantine */
	enum ag_dmarc_fromerr on_dmarc_from_error; /* On-DMARCFromError */
	int on_dmarc_temperror;	/* On-DMARCTemperror: 0 accept, 1 tempfail */
	char *psl_file;		/* PublicSuffixList: NULL: Debian's */
	unsigned history_days;	/* HistoryDays: default 30, 0: none */
	char *metrics_listen;	/* MetricsListen: ADDR:PORT; NULL: no endpoint */
};

/*
 * The control socket's path: ControlSocket, else control.sock in the
 * directory of a unix: Socket, else AG_CONFIG_DEFAULT_CONTROL.  False
 * when it does not fit BUF.
 */
bool ag_config_control_path(const struct ag_config *c, char *buf,
    size_t bufsz);

/* Are rate counters kept in Redis? */
bool ag_config_rate_redis(const struct ag_config *c);

/*
 * Load FILE (NULL: embedded defaults only, no file read) into a new
 * snapshot with one reference.  On error returns AG_INVALID (syntax,
 * range, unknown keyword: ERR holds "file:line: message") or
 * AG_PERMFAIL (cannot read: ERR holds "file: strerror"), and *OUT is NULL.
 */
ag_status ag_config_load(const char *file, struct ag_config **out,
    char *err, size_t errlen);

/* The same from a string; NAME is used in messages in place of a path. */
ag_status ag_config_load_string(const char *text, const char *name,
    struct ag_config **out, char *err, size_t errlen);

/*
 * Set KEYWORD to VALUE in C, parsed and checked as in a file (for command
 * line overrides such as authgate -p).  Only for a config that nobody else
 * holds yet.  On error C is unchanged and ERR says "Keyword: message".
 */
ag_status ag_config_set(struct ag_config *c, const char *keyword,
    const char *value, char *err, size_t errlen);

struct ag_config *ag_config_ref(struct ag_config *c);
void ag_config_unref(struct ag_config *c);	/* NULL is fine */

/* Print every effective setting as "Keyword value" lines, in table order. */
void ag_config_dump(const struct ag_config *c, FILE *fp);

/* The keyword table's names, NULL-terminated (for docs and tests). */
const char *const *ag_config_keywords(void);

#endif

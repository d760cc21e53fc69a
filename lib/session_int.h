/*
 * session_int.h - what lib/session.c and lib/session_auth.c share: the
 * connection and message state, and a few helpers.  Private to lib/.
 */
#ifndef AG_SESSION_INT_H
#define AG_SESSION_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "addr.h"
#include "dkim.h"
#include "dkimsign.h"
#include "dmarc.h"
#include "policy.h"
#include "rate.h"
#include "session.h"
#include "spf.h"

/* Bytes of header fields an outbound message may have to be signed. */
#define AG_SESSION_SIGN_HDR_MAX (1024 * 1024)

/* Rate counters one message may hold (distinct keys); beyond, a
 * recipient gets 452 4.5.3. */
#define AG_SESSION_RATE_HOLDS_MAX 1024

/* Quota a message holds on one counter until it ends (session_rate.c). */
struct rate_hold {
	char *key;			/* NUL-terminated, keylen bytes */
	size_t keylen;
	struct ag_rate_limit lim;
	enum ag_rate_measure measure;
	uint64_t cost;			/* taken so far */
	enum ag_rate_where where;
	const struct ag_rule *rule;	/* in the pinned snapshot */
	size_t idx;			/* the limit's index in the rule */
};

/* The first From header is kept up to this many bytes for DMARC; a
 * longer one is a From we cannot read (session_dmarc.c). */
#define AG_SESSION_FROM_MAX 16384

/* Log values are cut here; longer input is still parsed in full. */
#define LOGVAL_MAX 256

struct msg {
	const struct ag_snapshot *snap;	/* pinned at MAIL FROM */
	struct ag_mailaddr sender;
	bool sender_bad;		/* unparseable: log sender_raw instead */
	char sender_raw[LOGVAL_MAX];
	bool trusted;
	bool have_declared;
	uint64_t declared_size;		/* SIZE= */
	uint64_t size;			/* counted so far (saturating) */
	struct ag_setting size_limit;	/* smallest max-size that applies */
	size_t nrcpt_ok;
	size_t nrcpt_bad;
	struct ag_verdict would;	/* first dry-run decision, for the log */
	bool have_would;
	bool nopolicy;			/* database down, On-DatabaseError accept */
	struct ag_edit *edits;
	size_t nedits;
	/* SPF: the MAIL FROM identity decides, HELO is recorded */
	bool spf_done;			/* spf holds a result */
	const char *spf_skip;		/* why not checked (static), or NULL */
	struct ag_spf_answer spf;
	bool spf_helo_done;
	struct ag_spf_answer spf_helo;
	char spf_identity[AG_ADDR_MAX + 1];	/* the address checked */
	bool spf_per_rcpt;		/* the decision waits for RCPT TO */
	char tag[48];			/* X-Authgate-Tag value, or "" */
	/* DKIM and forged Authentication-Results */
	struct ag_dkim_msg *dkim;	/* NULL: not verified */
	struct ag_setting dkim_req;	/* a rule's --dkim require (1), if any */
	const char *dkim_skip;		/* why not verified (static), or NULL */
	unsigned ar_seen;		/* Authentication-Results headers so far */
	unsigned *ar_forged;		/* their numbers (1-based) claiming us */
	size_t nforged;
	size_t forged_cap;
	/* DMARC (session_dmarc.c) */
	uint32_t from_count;		/* From headers seen */
	char *from_value;		/* the first one's value, or NULL */
	bool from_too_long;
	int from_status;		/* enum ag_from_status */
	char from_domain[AG_ADDR_DOMAIN_MAX + 1];
	struct ag_setting dmarc_check;	/* a rule's --dmarc check=on|off */
	struct ag_setting dmarc_enforce; /* a rule's --dmarc enforce=on|off */
	const char *dmarc_skip;		/* why not evaluated (static), or NULL */
	bool dmarc_done;		/* evaluated: dmarc_result is set */
	int dmarc_result;		/* enum ag_dmarc_res */
	char dmarc_reason[160];
	struct ag_dmarc_answer *dmarc;	/* the evaluation, or NULL */
	int dmarc_applied;		/* enum ag_dmarc_policy enforced */
	const char *dmarc_override;	/* "config", "rule" or NULL */
	int64_t dmarc_rule;		/* the rule that turned it down */
	bool dmarc_hold;		/* quarantine in the hold queue */
	/* DKIM signing (session_sign.c) */
	bool sign;			/* outbound: to be signed */
	bool sign_none;			/* outbound, but no key for its From */
	bool signed_ok;
	char sign_error[320];		/* why it cannot be signed, or "" */
	struct sign_hdr *sign_hdrs;	/* kept until the end of headers */
	size_t sign_nhdrs;
	size_t sign_hbytes;
	struct ag_sign_msg *signing;	/* the signatures in progress */
	size_t sign_count;
	char sign_what[128];		/* "d/s,d/s" for the log */
	/* rate limits */
	struct rate_hold *holds;
	size_t nholds;
	char rate_hit[AG_RATE_KEY_MAX + 1]; /* the counter that refused */
	int64_t rate_rule;		/* its rule */
};

struct ag_conn {
	struct ag_engine *eng;
	bool have_ip;
	struct ag_ip ip;
	char ipstr[AG_IP_STRLEN];
	char client_name[LOGVAL_MAX];
	char helo_raw[LOGVAL_MAX];
	char helo[AG_ADDR_DOMAIN_MAX + 1];	/* normalized, "" if invalid */
	char qid[64];
	char auth[256];
	bool leadspc;			/* header values keep their leading space */
	struct msg *msg;
	struct ag_edit *edits;		/* of the last accepted message */
	size_t nedits;
};

/* Helpers of lib/session.c. */

/* A decision of a dry-run rule or under DryRun is remembered for the log
 * and the phase continues; true when V is final. */
bool sess_decide(struct ag_conn *c, bool rule_dry, struct ag_verdict *v);

/* Answer with the configured action for a failure class. */
void sess_failure_action(enum ag_action act, struct ag_verdict *v,
    const char *reason, const char *text);

/* Append a header edit (VALUE is taken over); false on no memory. */
bool sess_edit_add(struct msg *m, enum ag_edit_op op, int index,
    const char *name, char *value);

/* lib/session_auth.c: SPF, DKIM, forged headers, the headers we add. */

/* At MAIL FROM: SPF (decided unless a recipient rule may change it), and
 * whether DKIM will be verified. */
void sess_auth_mail(struct ag_conn *c, const struct ag_eval *ev,
    struct ag_verdict *v);

/* At RCPT TO: the per-recipient SPF decision; true when V is final. */
bool sess_auth_rcpt(struct ag_conn *c, const struct ag_eval *ev,
    struct ag_verdict *v);

/* The message as it streams; false on no memory. */
bool sess_auth_header(struct ag_conn *c, const char *name, const char *value);
bool sess_auth_eoh(struct ag_conn *c);
bool sess_auth_body(struct ag_conn *c, const unsigned char *buf, size_t len);

/* End of message: finish DKIM, decide a DKIM requirement (V may become
 * final), and for an accepted message add and remove headers; false on
 * no memory. */
bool sess_auth_eom(struct ag_conn *c, struct ag_verdict *v);

/* The log fields: " spf=... dkim=...". */
void sess_auth_logfields(const struct msg *m, char *buf, size_t bufsz);

/* Count the SPF and DMARC results of the ending message (metrics.h);
 * DKIM's are counted at end of message, where they are known. */
void sess_auth_metrics(const struct msg *m);

/* Free what the message holds for these checks. */
void sess_auth_free(struct msg *m);

/* lib/session_dmarc.c: DMARC (see the top of that file). */
struct ag_authres;

/* Each header: counts From and keeps the first; false on no memory. */
bool sess_dmarc_header(struct ag_conn *c, const char *name,
    const char *value);

/* End of message, after DKIM: evaluate and decide; V may become final. */
void sess_dmarc_eom(struct ag_conn *c, struct ag_verdict *v);

/* After the headers are added: a quarantine verdict, if any. */
void sess_dmarc_hold(struct ag_conn *c, struct ag_verdict *v);

/* The dmarc result of Authentication-Results; false on no memory. */
bool sess_dmarc_authres(const struct msg *m, struct ag_authres *ar);

/* The log field " dmarc=...", or "". */
void sess_dmarc_logfields(const struct msg *m, char *buf, size_t bufsz);

void sess_dmarc_free(struct msg *m);

/* lib/session_sign.c: DKIM signing of outbound mail. */
void sess_sign_mail(struct ag_conn *c);
bool sess_sign_header(struct ag_conn *c, const char *name,
    const char *value);
bool sess_sign_eoh(struct ag_conn *c);
bool sess_sign_body(struct ag_conn *c, const unsigned char *buf, size_t len);
bool sess_sign_eom(struct ag_conn *c, struct ag_verdict *v);
void sess_sign_logfields(const struct msg *m, char *buf, size_t bufsz);
void sess_sign_free(struct msg *m);

/* lib/session_rate.c: rate limits (see the top of that file). */

/* At MAIL FROM, after the size checks; V may become final. */
void sess_rate_mail(struct ag_conn *c, struct ag_verdict *v);

/* At RCPT TO; true when V (the recipient's answer) is final. */
bool sess_rate_rcpt(struct ag_conn *c, const struct ag_mailaddr *rcpt,
    struct ag_verdict *v);

/* End of message: byte limits on the real size; V may become final. */
void sess_rate_eom(struct ag_conn *c, struct ag_verdict *v);

/* The message ends: keep what it took (COMMIT) or give it back. */
void sess_rate_end(struct msg *m, bool commit);

#endif

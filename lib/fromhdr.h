/*
 * fromhdr.h - the RFC5322.From parser for DMARC (RFC 7489 section 6.6.1):
 * from the value of one From header, the one author mailbox and its domain,
 * or the reason there is not exactly one.
 *
 * The From header is the classic attack surface of DMARC filters:
 *  - CVE-2019-16378: OpenDMARC evaluated only the first of several From
 *    mailboxes ("<a@good.example>, <b@evil.example>"), so a message could
 *    pass DMARC for one domain and show another.  Here every mailbox of the
 *    whole value is counted, wherever it stands (list, group, after a fold,
 *    behind empty list members), and two or more are AG_FROM_MULTIPLE.
 *  - CVE-2021-34555: OpenDMARC 1.4.1 crashed (NULL dereference in its
 *    multi-From code) on From fields such as one with an empty quoted
 *    display name ('"" <a@b.example>').  Here nothing is allocated, nothing
 *    is dereferenced past LEN, and the empty quoted-string is a word like
 *    any other.
 *  - CVE-2020-12272: OpenDMARC took text outside domain syntax, as in
 *    "example.net(.example.com", for a domain name.  Here a domain is
 *    AG_FROM_OK only when its text passes ag_domain_normalize().
 *
 * THE GRAMMAR (RFC 5322 3.2-3.4 and 3.6.2, with the obsolete syntax of 4.4
 * that mail in the wild uses; groups as RFC 6854 allows them in From):
 *
 *   from         = list
 *   list         = member *("," member)     ; members may be empty (4.4)
 *   member       = mailbox / group / empty
 *   group        = phrase ":" [list-of-mailboxes] ";"   ; no nested groups
 *   mailbox      = addr-spec / [phrase] angle-addr
 *   angle-addr   = "<" [obs-route] addr-spec ">"
 *   obs-route    = *("," ) "@" domain *("," ["@" domain]) ":"  ; dropped
 *   addr-spec    = local-part "@" domain
 *   phrase       = word *(word / ".")       ; obs-phrase: starts with a word
 *   local-part   = words and dots, no two words side by side
 *   word         = atom / quoted-string
 *
 * CFWS (white space, folds and comments) may stand between any two tokens.
 *  - atom: a run of RFC 5322 atext and of 8-bit bytes (RFC 6532 UTF-8, and
 *    raw Latin-1 display names as they occur in the wild).  RFC 2047
 *    encoded words ("=?utf-8?q?J=C3=B6rg?=") are atoms.
 *  - quoted-string: '"' ... '"' with quoted-pairs ('\"', '\\'); any byte but
 *    NUL inside (obs-qtext), so '"a, b" <x@example.com>' is one mailbox.
 *  - comment: '(' ... ')' with quoted-pairs, nested at most
 *    AG_FROM_COMMENT_DEPTH_MAX deep; deeper is AG_FROM_SYNTAX.
 *  - folding: CRLF or a bare LF (as Sendmail and Postfix hand folded values
 *    to a milter) followed by SP or HTAB is white space.  Any other CR or
 *    LF, a trailing CRLF included, is AG_FROM_SYNTAX, and so is a NUL byte.
 *  - local-part: lenient beyond obs-local-part: leading, trailing and
 *    repeated dots ("a..b.@docomo.example", real addresses of Japanese
 *    carriers) are accepted; DMARC needs only the domain.  "a b@x" (two
 *    words without a dot) is a phrase, not a local part: AG_FROM_SYNTAX.
 *  - domain: atoms and dots with CFWS only around the dots (obs-domain),
 *    then ag_domain_normalize(): labels of letters, digits, '-' and '_'
 *    ("exam_ple.com" passes, as for DKIM/SPF names), or well-formed UTF-8
 *    (EAI); at most 63 per label and 253 in all, plus an optional trailing
 *    dot that is removed; lower-cased.  Single-label and all-numeric names
 *    ("localhost", "1.2.3.4") pass as ag_domain_normalize() lets them.
 *
 * WHERE A DOMAIN ENDS, AND BAD DOMAINS
 *
 * The domain after '@' runs to the first token that can end it: the end
 * of the value, ',', '<' or '>' everywhere, and ';' after a bare addr-spec
 * inside a group ("g: a@example.com;").  If the text up to there is not
 * one dot-atom domain name, the mailbox still counts but its domain is
 * bad: a domain literal ("[192.0.2.1]"), a quoted-string, specials that
 * cannot end it (";" outside a group, "@", ":", "\", ")", "]"), atext
 * outside domain syntax ("!", "%", "/", ...), control characters, 8-bit
 * bytes that are not UTF-8, white space or a comment between two atoms
 * ("exa mple.com"), empty labels, an empty domain ("a@"), or a name that
 * is too long.  What follows the end must fit the grammar, else
 * AG_FROM_SYNTAX ("a@example.com> x", "<a@x.example, b@y.example>").
 *
 * DECISIONS
 *  - "<>" (with or without a display name) is AG_FROM_SYNTAX: the SMTP
 *    null path is not a mailbox, and From has no empty form.
 *  - An addr-spec without "@" ("alice", "<alice>") is AG_FROM_SYNTAX; "a@"
 *    is AG_FROM_BAD_DOMAIN (empty domain).
 *  - An unquoted "@" or ":" in a display name ("x@y.example <a@b.example>",
 *    "Re: Bob <a@b.example>") is AG_FROM_SYNTAX, as RFC 5322 says.
 *  - A local part longer than AG_ADDR_LOCAL_MAX bytes is cut for the log
 *    copy (perhaps inside a UTF-8 sequence); it is not an error.
 *  - Statuses rank SYNTAX > MULTIPLE > BAD_DOMAIN: a value that does not
 *    parse is AG_FROM_SYNTAX however many mailboxes came before the error,
 *    and two mailboxes are AG_FROM_MULTIPLE even if a domain is bad.
 *  - A value that is empty, white space, comments and/or commas only is
 *    AG_FROM_NONE, as is a group with no members.
 *
 * The parser makes one pass, linear in LEN, never reads past LEN, does
 * not allocate, and recurses at most two calls deep (list, group, list);
 * comments are skipped with a counter.
 *
 * Thread-safe: no state.
 */
#ifndef AG_FROMHDR_H
#define AG_FROMHDR_H

#include <stddef.h>

#include "addr.h"

/* Deepest comment nesting accepted; RFC 5322 3.2.2 sets no limit. */
#define AG_FROM_COMMENT_DEPTH_MAX 32

enum ag_from_status {
	AG_FROM_OK = 0,		/* one mailbox, its domain in OUT */
	AG_FROM_NONE,		/* no mailbox: empty, empty group */
	AG_FROM_MULTIPLE,	/* two or more mailboxes, in any shape */
	AG_FROM_BAD_DOMAIN,	/* one mailbox, its domain no domain name */
	AG_FROM_SYNTAX		/* not a mailbox list at all */
};

/*
 * LOCAL is the local part as written (quotes, escapes and folds removed),
 * cut to fit; for logs only, and to be escaped there: it may hold any byte
 * but NUL.  DOMAIN is ag_domain_normalize()d: lower case, no trailing dot.
 */
struct ag_from {
	char local[AG_ADDR_LOCAL_MAX + 1];
	char domain[AG_ADDR_DOMAIN_MAX + 1];
};

/*
 * Parse the value of one From header, folded or unfolded: LEN bytes at
 * VALUE, which need not be NUL-terminated (a NUL inside is AG_FROM_SYNTAX).
 * On AG_FROM_OK both parts of OUT are set; on any other status both are
 * empty strings.  OUT may be NULL when only the status is wanted.  A NULL
 * VALUE is AG_FROM_SYNTAX.
 */
enum ag_from_status ag_from_parse(const char *value, size_t len,
    struct ag_from *out);

/* "ok", "none", "multiple", "bad-domain", "syntax"; "unknown" otherwise. */
const char *ag_from_status_name(enum ag_from_status s);

#endif

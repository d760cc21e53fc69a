#!/bin/sh
# make.sh - regenerate the DKIM test data of tests/unit/t_dkim.c.
#
# Run by hand, once, from any directory: sh tests/unit/dkim/make.sh.  Not
# run at build time: the outputs (keys, signed messages, zone.txt) are
# committed, so that the tests never depend on the signer or on fresh
# randomness.  Private keys here are test data and sign nothing else.
#
# Keys come from opendkim-genkey (RSA 512, 1024, 2048) and dknewkey
# (Ed25519); messages are signed by an independent implementation, dkimpy
# (dkimsign, and the dkim module for l=, which dkimsign cannot ask for),
# never by libopendkim, which is what the tests check.  rfc8463.eml is the
# example of RFC 8463 Appendix A (both signatures), as dkimpy ships it in
# its own tests; zone.txt gets its two key records from A.2.
#
# Signing times are fixed (t=1735689600, 2025-01-01): RSA and Ed25519
# signatures are deterministic, so a rerun with the same keys reproduces
# every file byte for byte, and t= is never in the future of the machine
# running the tests (libopendkim refuses such signatures).
#
# Needs: opendkim-tools, python3-dkim (run with /usr/bin/python3),
# python3-nacl.  Outputs:
#   *.private, ed.key        private keys          zone.txt   key records
#   *.eml                    signed messages       base.eml   unsigned
# expect.txt (written by hand) says what each message must give.
set -eu
cd "$(dirname "$0")"
PY=/usr/bin/python3
D=example.com

genrsa() {	# genrsa BITS NAME
	rm -f "$2.private" "$2.txt"
	opendkim-genkey -b "$1" -d "$D" -s "$2"
	rm -f "$2.txt"
}
[ -f r512.private ] || genrsa 512 r512
[ -f r1024.private ] || genrsa 1024 r1024
[ -f r2048.private ] || genrsa 2048 r2048
if [ ! -f ed.key ]; then
	dknewkey --ktype ed25519 ed >/dev/null
	rm -f ed.dns
fi

# The public half of a key as DNS wants it (p= value).
pub_rsa() { openssl rsa -in "$1" -pubout -outform DER 2>/dev/null | base64 -w0; }
pub_ed() {
	$PY -c 'import base64,sys,nacl.signing
k=nacl.signing.SigningKey(base64.b64decode(open(sys.argv[1],"rb").read()))
print(base64.b64encode(bytes(k.verify_key)).decode())' "$1"
}

# sign IN OUT SELECTOR DOMAIN KEY [dkimsign options...]: dkimsign, with its
# clock fixed at $T so that t= is the same on every run and never in the
# future of the machine running the tests (libopendkim refuses those).
T=1735689600	# 2025-01-01T00:00:00Z
sign() {
	in=$1 out=$2 sel=$3 dom=$4 key=$5
	shift 5
	$PY -c 'import runpy, sys, time
t = float(sys.argv[1])
time.time = lambda: t
sys.argv = ["dkimsign"] + sys.argv[2:]
runpy.run_path("/usr/bin/dkimsign", run_name="__main__")' \
	    "$T" "$@" "$sel" "$dom" "$key" <"$in" >"$out"
}

# The unsigned message: folded and tabbed header fields, trailing white
# space and empty lines at the end of the body, so that simple and relaxed
# canonicalization differ.
printf '%s\n' \
	'From: Alice Example <alice@example.com>' \
	'To: Bob Example <bob@example.org>,' \
	'	Carol Example <carol@example.org>' \
	'Subject: DKIM test message,' \
	'  folded over two lines' \
	'Date: Mon, 02 Jun 2025 10:00:00 +0000' \
	'Message-ID: <dkim-test-1@example.com>' \
	'X-Tabbed:	value after a tab' \
	'' \
	'Hello Bob,  ' \
	'' \
	'this body has trailing white space	 ' \
	'and  doubled   spaces.' \
	'' \
	'' >base.eml

R2=r2048.private
sign base.eml ss.eml r2048 $D $R2 --hcanon simple --bcanon simple
sign base.eml rr.eml r2048 $D $R2 --hcanon relaxed --bcanon relaxed
sign base.eml rs.eml r1024 $D r1024.private --hcanon relaxed --bcanon simple
sign base.eml ed.eml ed $D ed.key --signalg ed25519-sha256
# two signatures: Ed25519 first, then RSA over the result
sign base.eml ed-tmp.eml ed $D ed.key --signalg ed25519-sha256
sign ed-tmp.eml two.eml r2048 $D $R2 --hcanon relaxed --bcanon relaxed
rm -f ed-tmp.eml
# i= in a subdomain of d=, and d= a subdomain with a key of its own
sign base.eml sub-i.eml r2048 $D $R2 --identity alerts@news.example.com
sign base.eml sub-d.eml r2048 mail.example.org $R2
# RFC 8301: rsa-sha1 and a 512-bit key must not pass
sign base.eml sha1.eml r2048 $D $R2 --signalg rsa-sha1
sign base.eml r512.eml r512 $D r512.private
# l=: the signature covers the body as signed; text appended afterwards
# is outside it (and must not break the signature)
$PY - "$R2" "$T" <<'PYEOF' >l.eml
import sys, time, dkim
t = float(sys.argv[2])
time.time = lambda: t
msg = open("base.eml", "rb").read()
sig = dkim.sign(msg, b"r2048", b"example.com", open(sys.argv[1], "rb").read(),
                canonicalize=(b"relaxed", b"relaxed"), length=True,
                linesep=b"\n")
sys.stdout.buffer.write(sig + msg + b"Appended after signing.\n")
PYEOF
# the same key under selectors whose key records are broken in zone.txt
for s in revoked nokey nodata garbage dupp testing sha1only twotxt \
    kgarbage ktype; do
	sign base.eml "key-$s.eml" "$s" $D $R2
done
sign base.eml key-timeout.eml r2048 example.net $R2
sign base.eml key-edshort.eml edshort $D ed.key --signalg ed25519-sha256

cp /usr/lib/python3/dist-packages/dkim/tests/data/rfc6376.signed.msg \
    rfc8463.eml

# Key records.  Long values are split into strings of at most 255 bytes.
txt() {	# txt NAME VALUE
	$PY -c 'import sys
v=sys.argv[2]
print("%s. 300 IN TXT %s" % (sys.argv[1],
      " ".join("\"%s\"" % v[i:i+250] for i in range(0, len(v), 250))))' \
	    "$1" "$2"
}
P512=$(pub_rsa r512.private)
P1024=$(pub_rsa r1024.private)
P2048=$(pub_rsa r2048.private)
PED=$(pub_ed ed.key)
{
	echo "# key records for tests/unit/t_dkim.c (made by make.sh)"
	txt r512._domainkey.$D "v=DKIM1; k=rsa; p=$P512"
	txt r1024._domainkey.$D "v=DKIM1; k=rsa; p=$P1024"
	txt r2048._domainkey.$D "v=DKIM1; k=rsa; p=$P2048"
	txt r2048._domainkey.mail.example.org "v=DKIM1; k=rsa; p=$P2048"
	txt ed._domainkey.$D "v=DKIM1; k=ed25519; p=$PED"
	echo "nodata._domainkey.$D. 300 IN A 192.0.2.1"	# a name, no TXT
	txt revoked._domainkey.$D "v=DKIM1; k=rsa; p="
	txt garbage._domainkey.$D "v=DKIM1; k=rsa; p=!!not*base64!!"
	txt dupp._domainkey.$D "v=DKIM1; k=rsa; p=$P2048; p=$P1024"
	txt testing._domainkey.$D "v=DKIM1; k=rsa; t=y; p=$P2048"
	txt sha1only._domainkey.$D "v=DKIM1; k=rsa; h=sha1; p=$P2048"
	txt twotxt._domainkey.$D "v=DKIM1; k=rsa; p=$P2048"
	txt twotxt._domainkey.$D "v=DKIM1; k=rsa; p=$P1024"
	txt kgarbage._domainkey.$D "this is not a key record"
	txt ktype._domainkey.$D "v=DKIM1; k=ed25519; p=$P2048"
	# an Ed25519 key one byte short (31 bytes)
	txt edshort._domainkey.$D "v=DKIM1; k=ed25519; p=$($PY -c '
import base64,sys; print(base64.b64encode(base64.b64decode(sys.argv[1])[:31]).decode())' "$PED")"
	# RFC 8463 A.2
	txt brisbane._domainkey.football.example.com \
	    "v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="
	txt test._domainkey.football.example.com \
	    "$(cat /usr/lib/python3/dist-packages/dkim/tests/data/test.txt)"
} >zone.txt
echo "made $(ls *.eml | wc -l) messages and $(grep -c TXT zone.txt) key records"

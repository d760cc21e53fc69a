# Integration tests (each a TAP-speaking script run by /usr/bin/python3;
# see tests/lib/agtest.py).  Listed here so that Makefile.am stays small;
# every entry must exist.  The slow ones (real Postfix) come first so that
# `make -j2 check` overlaps them with the rest.
INTEGRATION_TESTS_LIST = \
	tests/e2e/t_kill.py \
	tests/e2e/t_deb.py \
	tests/e2e/t_delivery.py \
	tests/e2e/t_postfix_chroot.py \
	tests/e2e/t_size.py \
	tests/e2e/t_rcpt.py \
	tests/e2e/t_xclient.py \
	tests/e2e/t_sendmail.py \
	tests/e2e/t_spf.py \
	tests/e2e/t_dkim.py \
	tests/e2e/t_rate.py \
	tests/e2e/t_rate_cluster.py \
	tests/e2e/t_dmarc.py \
	tests/e2e/t_sign.py \
	tests/e2e/t_faults_dns.py \
	tests/e2e/t_faults_store.py \
	tests/e2e/t_faults_redis.py \
	tests/e2e/t_hup.py \
	tests/milter/t_phases.py \
	tests/milter/t_spf.py \
	tests/milter/t_forged_ar.py \
	tests/milter/t_limits.py \
	tests/milter/t_database.py \
	tests/milter/t_unix.py \
	tests/milter/t_offline.py \
	tests/milter/t_config.py \
	tests/milter/t_rate.py \
	tests/milter/t_rate_layers.py \
	tests/milter/t_dmarc_report.py \
	tests/milter/t_report.py \
	tests/milter/t_keytool.py \
	tests/milter/t_caps.py \
	tests/milter/t_concurrency.py \
	tests/milter/t_garbage.py \
	tests/milter/t_badinput.py \
	tests/milter/t_metrics.py \
	tests/docs/t_docs.py \
	tests/docs/t_systemd.py \
	tests/milter/t_milterload.py

# A script's exit status repeats its "not ok" lines (it exits 1 when any
# failed, for runs by hand); under the TAP driver count the lines only.
# A script that dies before printing its plan is still an ERROR.
AM_PY_LOG_DRIVER_FLAGS = --ignore-exit

# The libFuzzer harnesses (tests/fuzz/README.md).  Built only in a tree
# configured with CC=clang --enable-fuzz (tests/fuzz/build.sh makes one in
# _fuzz/), by `make fuzz-build`; never by `make` or `make check`.  Every
# harness links the shared helper and lib/ as the daemon does.
FUZZ_HARNESSES = \
	tests/fuzz/fuzz_addr \
	tests/fuzz/fuzz_admin \
	tests/fuzz/fuzz_authres \
	tests/fuzz/fuzz_config \
	tests/fuzz/fuzz_dkim \
	tests/fuzz/fuzz_dmarcrec \
	tests/fuzz/fuzz_fromhdr \
	tests/fuzz/fuzz_pipeline \
	tests/fuzz/fuzz_ratespec \
	tests/fuzz/fuzz_redis_url \
	tests/fuzz/fuzz_spf \
	tests/fuzz/fuzz_spfrecord

EXTRA_PROGRAMS = $(FUZZ_HARNESSES)
FUZZ_COMMON = tests/fuzz/fuzzlib.c tests/fuzz/fuzzlib.h
FUZZ_LDADD = lib/libauthgate.a $(LIBAG_DEPS)

tests_fuzz_fuzz_addr_SOURCES = tests/fuzz/fuzz_addr.c $(FUZZ_COMMON)
tests_fuzz_fuzz_addr_LDFLAGS = $(FUZZ_LDFLAGS)
tests_fuzz_fuzz_addr_LDADD = $(FUZZ_LDADD)
tests_fuzz_fuzz_admin_SOURCES = tests/fuzz/fuzz_admin.c $(FUZZ_COMMON)
tests_fuzz_fuzz_admin_LDFLAGS = $(FUZZ_LDFLAGS)
tests_fuzz_fuzz_admin_LDADD = $(FUZZ_LDADD)
tests_fuzz_fuzz_authres_SOURCES = tests/fuzz/fuzz_authres.c $(FUZZ_COMMON)
tests_fuzz_fuzz_authres_LDFLAGS = $(FUZZ_LDFLAGS)
tests_fuzz_fuzz_authres_LDADD = $(FUZZ_LDADD)
tests_fuzz_fuzz_config_SOURCES = tests/fuzz/fuzz_config.c $(FUZZ_COMMON)
tests_fuzz_fuzz_config_LDFLAGS = $(FUZZ_LDFLAGS)
tests_fuzz_fuzz_config_LDADD = $(FUZZ_LDADD)
tests_fuzz_fuzz_dkim_SOURCES = tests/fuzz/fuzz_dkim.c $(FUZZ_COMMON)
tests_fuzz_fuzz_dkim_LDFLAGS = $(FUZZ_LDFLAGS)
tests_fuzz_fuzz_dkim_LDADD = $(FUZZ_LDADD)
tests_fuzz_fuzz_dmarcrec_SOURCES = tests/fuzz/fuzz_dmarcrec.c $(FUZZ_COMMON)
tests_fuzz_fuzz_dmarcrec_LDFLAGS = $(FUZZ_LDFLAGS)
tests_fuzz_fuzz_dmarcrec_LDADD = $(FUZZ_LDADD)
tests_fuzz_fuzz_fromhdr_SOURCES = tests/fuzz/fuzz_fromhdr.c $(FUZZ_COMMON)
tests_fuzz_fuzz_fromhdr_LDFLAGS = $(FUZZ_LDFLAGS)
tests_fuzz_fuzz_fromhdr_LDADD = $(FUZZ_LDADD)
tests_fuzz_fuzz_pipeline_SOURCES = tests/fuzz/fuzz_pipeline.c $(FUZZ_COMMON)
tests_fuzz_fuzz_pipeline_LDFLAGS = $(FUZZ_LDFLAGS)
tests_fuzz_fuzz_pipeline_LDADD = $(FUZZ_LDADD)
tests_fuzz_fuzz_ratespec_SOURCES = tests/fuzz/fuzz_ratespec.c $(FUZZ_COMMON)
tests_fuzz_fuzz_ratespec_LDFLAGS = $(FUZZ_LDFLAGS)
tests_fuzz_fuzz_ratespec_LDADD = $(FUZZ_LDADD)
tests_fuzz_fuzz_redis_url_SOURCES = tests/fuzz/fuzz_redis_url.c $(FUZZ_COMMON)
tests_fuzz_fuzz_redis_url_LDFLAGS = $(FUZZ_LDFLAGS)
tests_fuzz_fuzz_redis_url_LDADD = $(FUZZ_LDADD)
tests_fuzz_fuzz_spf_SOURCES = tests/fuzz/fuzz_spf.c $(FUZZ_COMMON)
tests_fuzz_fuzz_spf_LDFLAGS = $(FUZZ_LDFLAGS)
tests_fuzz_fuzz_spf_LDADD = $(FUZZ_LDADD)
tests_fuzz_fuzz_spfrecord_SOURCES = tests/fuzz/fuzz_spfrecord.c $(FUZZ_COMMON)
tests_fuzz_fuzz_spfrecord_LDFLAGS = $(FUZZ_LDFLAGS)
tests_fuzz_fuzz_spfrecord_LDADD = $(FUZZ_LDADD)

if FUZZ
fuzz-build: $(FUZZ_HARNESSES)
else
fuzz-build:
	@echo "fuzz-build: this tree is not configured with CC=clang --enable-fuzz;" >&2
	@echo "make fuzz-smoke (tests/fuzz/run.sh) builds the harnesses in _fuzz/" >&2
	@exit 1
endif

# A short run of every harness (CI: tests/run), and long runs by hand.
fuzz-smoke:
	bash $(srcdir)/tests/fuzz/run.sh smoke

fuzz-long:
	bash $(srcdir)/tests/fuzz/run.sh long

.PHONY: fuzz-build fuzz-smoke fuzz-long

# Micro-benchmarks (tests/bench/README.md), built only by `make bench-micro`
# and run by tests/bench/run micro; never by `make` or `make check`.  Plain
# rules rather than an automake primary: they link lib/ as the daemon does
# and need nothing from configure beyond the flags it found.
BENCH_MICRO = tests/bench/verifybench tests/bench/spfbench \
	tests/bench/ratebench$(EXEEXT)
BENCH_CFLAGS = -O2 -pthread $(AM_CPPFLAGS) $(DEP_CFLAGS) $(WARN_CFLAGS)

.PHONY: bench-micro
bench-micro: $(BENCH_MICRO)

tests/bench/verifybench: $(srcdir)/tests/bench/verifybench.c lib/libauthgate.a
	@$(MKDIR_P) tests/bench
	$(AM_V_CCLD)$(CC) $(BENCH_CFLAGS) -o $@ $(srcdir)/tests/bench/verifybench.c \
	    lib/libauthgate.a $(LIBAG_DEPS) -lcrypto

tests/bench/spfbench: $(srcdir)/tests/bench/spfbench.c lib/libauthgate.a
	@$(MKDIR_P) tests/bench
	$(AM_V_CCLD)$(CC) $(BENCH_CFLAGS) -o $@ $(srcdir)/tests/bench/spfbench.c \
	    lib/libauthgate.a $(LIBAG_DEPS)

# `make clean-bench-micro` removes them (ratebench is Makefile.am's, an
# EXTRA_PROGRAMS of `make bench`)
.PHONY: clean-bench-micro
clean-bench-micro:
	rm -f tests/bench/verifybench tests/bench/spfbench

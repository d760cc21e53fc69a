# Micro-benchmarks (tests/bench/README.md), built only by `make bench-micro`
# and run by tests/bench/run micro; never by `make` or `make check`.  Plain
# rules rather than an automake primary: they link lib/ as the daemon does
# and need nothing from configure beyond the flags it found.
BENCH_MICRO = tests/bench/verifybench tests/bench/spfbench \
	tests/bench/ratebench
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

# as tests/bench/README.md builds it by hand
tests/bench/ratebench: $(srcdir)/tests/bench/ratebench.c lib/libauthgate.a
	@$(MKDIR_P) tests/bench
	$(AM_V_CCLD)$(CC) $(BENCH_CFLAGS) -o $@ $(srcdir)/tests/bench/ratebench.c \
	    lib/libauthgate.a

# `make clean-bench-micro` removes them (no clean-local hook here: the
# load generator's rules may want that hook too)
.PHONY: clean-bench-micro
clean-bench-micro:
	rm -f $(BENCH_MICRO)

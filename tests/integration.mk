# Integration tests (each a TAP-speaking script).  Listed here so that
# Makefile.am stays small; every entry must exist.
INTEGRATION_TESTS_LIST =

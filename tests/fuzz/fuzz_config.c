/*
 * fuzz_config.c - the authgate.conf parser (lib/config.c,
 * lib/config_value.c), with every value parser it calls (networks,
 * forwarders, Redis URLs, dispositions, sizes).
 *
 * Input: the text of a config file.  Checks: an error message is
 * printable and names the file; a config that loads dumps (authgate -n)
 * to text that loads again and dumps the same (the "(unset)" lines left
 * out).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "fuzzlib.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	fz_log_setup();
	return 0;
}

/*
 * The dump of C, as authgate -n prints it, less the "(unset)" lines,
 * which say a keyword has no value rather than give one; the caller frees.
 */
static char *
dump(const struct ag_config *c)
{
	char *buf = NULL, *line, *save = NULL, *out;
	size_t len = 0, o = 0;
	FILE *fp = open_memstream(&buf, &len);

	if (fp == NULL) {
		abort();
	}
	ag_config_dump(c, fp);
	fclose(fp);
	if ((out = malloc(len + 1)) == NULL) {
		abort();
	}
	for (line = strtok_r(buf, "\n", &save); line != NULL;
	    line = strtok_r(NULL, "\n", &save)) {
		size_t l = strlen(line);

		if (l >= 8 && strcmp(line + l - 8, " (unset)") == 0) {
			continue;
		}
		memcpy(out + o, line, l);
		o += l;
		out[o++] = '\n';
	}
	out[o] = '\0';
	free(buf);
	return out;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text = fz_strndup(data, size), err[512], *d1, *d2;
	struct ag_config *c = NULL, *c2 = NULL;

	if (ag_config_load_string(text, "fuzz.conf", &c, err,
	    sizeof(err)) != AG_OK) {
		if (c != NULL) {
			fz_fail("error with a config");
		}
		if (strncmp(err, "fuzz.conf", 9) != 0) {
			fz_fail("error does not name the file: %s", err);
		}
		fz_check_printable("config error", err);
		free(text);
		return 0;
	}
	if (strstr(text, "(unset)") != NULL) {
		/* a value written "(unset)" would read as no value here */
		ag_config_unref(c);
		free(text);
		return 0;
	}
	d1 = dump(c);
	if (ag_config_load_string(d1, "dump", &c2, err, sizeof(err)) != AG_OK) {
		fz_fail("the dump does not load: %s\n%s", err, d1);
	}
	d2 = dump(c2);
	if (strcmp(d1, d2) != 0) {
		fz_fail("the dump changes when loaded:\n%s\n----\n%s", d1, d2);
	}
	free(d1);
	free(d2);
	ag_config_unref(c);
	ag_config_unref(c2);
	free(text);
	return 0;
}

/* fuzz_config.c - libFuzzer target for the configuration loader (config.c): the
 * input as a JSON file through cfg_load_string, which parses it with jansson,
 * validates every key against the table and, on failure, reports
 * "name:line:col: message" from its own position scanner.
 * Invariants: no crash, over-read or leak (ASan), exactly one outcome (0 with a
 * config that cfg_free releases, or -1 with an error), and every error names a
 * position inside the text: line 1 .. lines+1, column 0 .. longest line + 1.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1);
    if (s == NULL) {
        return 0;
    }
    memcpy(s, data, size);
    s[size] = '\0'; /* the loader reads up to the first NUL, as from a file */
    size_t len = strlen(s), lines = 1, longest = 0, cur = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] == '\n') {
            lines++;
            cur = 0;
        } else if (++cur > longest) {
            longest = cur;
        }
    }
    struct cfg c;
    char err[512];
    int rc = cfg_load_string("f.json", s, &c, err, sizeof(err));
    if (rc == 0) {
        cfg_free(&c);
    } else if (rc == -1) {
        int line = 0, col = 0, n = 0;
        if (err[0] == '\0') {
            abort(); /* a failure always says why */
        }
        if (sscanf(err, "f.json:%d:%d: %n", &line, &col, &n) == 2 && n > 0) {
            if (line < 1 || (size_t)line > lines || col < 0 || (size_t)col > longest + 1) {
                fprintf(stderr, "position outside the text (%zu lines, longest %zu): %s\n",
                        lines, longest, err);
                abort();
            }
        } else if (strncmp(err, "f.json: ", 8) != 0) {
            fprintf(stderr, "error without the file's name: %s\n", err);
            abort();
        }
    } else {
        abort();
    }
    free(s);
    return 0;
}

/* fuzz_config.c - libFuzzer target for the configuration loader (config.c): the
 * input as a JSON file through cfg_load_string, which parses it with jansson,
 * validates every key against the table and, on failure, reports
 * "name:line:col: message" from the position scanner (jsonpos.c); and that scanner
 * alone on the raw bytes, JSON or not, from an exact-size copy.
 * Invariants: no crash, over-read or leak (ASan), exactly one outcome (0 with a
 * config that cfg_release releases, or -1 with an error), and every error names a
 * position inside the text: line 1 .. lines+1, column 0 .. longest line + 1; the
 * scanner's positions are inside the text too, and key and value are one place
 * when the path is absent.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "jsonpos.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* jsonpos_find on data[0..size), which need not be JSON nor end with a NUL. */
static void scan_raw(const uint8_t *data, size_t size)
{
    static const char *const paths[][5] = {
        {"listen"},
        {"redis", "port"},
        {"backends", "ws", "servers", "s1", "weight"},
        {"limits", "*", "servers", "s1", "maxconn"},
    };
    static const size_t depths[] = {1, 2, 5, 5};
    char *t = malloc(size ? size : 1);
    if (t == NULL) {
        return;
    }
    memcpy(t, data, size);
    size_t lines = 1, longest = 0, cur = 0;
    for (size_t i = 0; i < size; i++) {
        if (t[i] == '\n') {
            lines++;
            cur = 0;
        } else if (++cur > longest) {
            longest = cur;
        }
    }
    for (size_t i = 0; i < sizeof(depths) / sizeof(depths[0]); i++) {
        struct jsonpos k, v;
        bool found = jsonpos_find(t, size, paths[i], depths[i], &k, &v);
        if (k.line < 1 || (size_t)k.line > lines || k.col < 1 || (size_t)k.col > longest + 1 ||
            v.line < 1 || (size_t)v.line > lines || v.col < 1 || (size_t)v.col > longest + 1 ||
            (!found && (k.line != v.line || k.col != v.col))) {
            fprintf(stderr, "jsonpos: key %d:%d value %d:%d (%s) outside %zu lines of %zu\n",
                    k.line, k.col, v.line, v.col, found ? "found" : "absent", lines, longest);
            abort();
        }
    }
    free(t);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1);
    if (s == NULL) {
        return 0;
    }
    memcpy(s, data, size);
    s[size] = '\0'; /* the loader reads up to the first NUL, as from a file */
    scan_raw(data, size);
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
        cfg_release(&c);
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

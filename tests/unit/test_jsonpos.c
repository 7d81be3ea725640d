/* Unit tests of jsonpos.c: the line:col of keys and values at every depth, over
 * nested objects and arrays, strings with escapes, escaped keys, UTF-8 columns,
 * CRLF line ends; paths absent from the text (the top-level value's place); and
 * every truncation of a text, read from an exact-size copy so that ASan sees any
 * read past the end. */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "jsonpos.h"

/* Find path (NULL-terminated) in text; compare with the expected key and value
 * positions and the expected result. */
static void expect_at(int line, const char *text, const char *const *path, bool found, int kl,
                      int kc, int vl, int vc)
{
    size_t depth = 0;
    while (path[depth] != NULL) {
        depth++;
    }
    struct jsonpos k = {-1, -1}, v = {-1, -1};
    bool got = jsonpos_find(text, strlen(text), path, depth, &k, &v);
    if (got != found || k.line != kl || k.col != kc || v.line != vl || v.col != vc) {
        check_failed++;
        fprintf(stderr,
                "%s:%d: expected %s key %d:%d value %d:%d, got %s key %d:%d value %d:%d\n",
                __FILE__, line, found ? "found" : "absent", kl, kc, vl, vc,
                got ? "found" : "absent", k.line, k.col, v.line, v.col);
    } else {
        check_passed++;
    }
}

#define AT(text, found, kl, kc, vl, vc, ...)                                                       \
    do {                                                                                           \
        static const char *const at_path_[] = {__VA_ARGS__, NULL};                                 \
        expect_at(__LINE__, text, at_path_, found, kl, kc, vl, vc);                                \
    } while (0)

static void test_top_level(void)
{
    /* one-line keys and values: columns from 1 at the opening quote / first byte */
    AT("{\"a\": 1, \"b\": \"x\"}", true, 1, 2, 1, 7, "a");
    AT("{\"a\": 1, \"b\": \"x\"}", true, 1, 10, 1, 15, "b");
    /* no spaces, and every kind of value skipped on the way */
    AT("{\"n\":null,\"t\":true,\"f\":-1.5e3,\"s\":\"\",\"o\":{},\"l\":[],\"z\":0}", true, 1, 52, 1,
       56, "z");
    /* a key's prefix or extension is another key */
    AT("{\"ab\": 1, \"a\": 2}", true, 1, 11, 1, 16, "a");
    AT("{\"a\": 1, \"ab\": 2}", true, 1, 10, 1, 16, "ab");
    /* the first of two equal keys wins (jansson refuses them before we look) */
    AT("{\"a\": 1, \"a\": 2}", true, 1, 2, 1, 7, "a");
    /* lines: a value on the line after its key, tabs count one column */
    AT("{\n  \"a\":\n\t\t7\n}", true, 2, 3, 3, 3, "a");
    /* CRLF: the '\r' ends nothing, the '\n' starts the next line */
    AT("{\r\n  \"a\": 1,\r\n  \"b\": 2\r\n}\r\n", true, 3, 3, 3, 8, "b");
}

static void test_nested(void)
{
    static const char text[] = "{\n"
                               "  \"redis\": {\"host\": \"h\", \"port\": 1},\n"
                               "  \"backends\": {\n"
                               "    \"ws\": {\"servers\": {\"s1\": {\"weight\": 300}}}\n"
                               "  }\n"
                               "}\n";
    AT(text, true, 2, 3, 2, 12, "redis");
    AT(text, true, 2, 26, 2, 34, "redis", "port");
    AT(text, true, 4, 5, 4, 11, "backends", "ws");
    AT(text, true, 4, 31, 4, 41, "backends", "ws", "servers", "s1", "weight");
    /* a key of the same name at another depth is not the member */
    AT("{\"a\": {\"port\": 1}, \"port\": 2}", true, 1, 20, 1, 28, "port");
    AT("{\"port\": 2, \"a\": {\"port\": 1}}", true, 1, 19, 1, 27, "a", "port");
}

static void test_skipping(void)
{
    /* arrays, nested, with brackets and braces inside strings */
    AT("{\"l\": [[1, {\"x\": \"]}\"}], \"[{\"], \"k\": 1}", true, 1, 33, 1, 38, "k");
    /* strings with escaped quotes and backslashes, in values and in other keys */
    AT("{\"s\": \"a\\\"b\\\\\", \"q\\\"\": 1, \"k\": 2}", true, 1, 27, 1, 32, "k");
    /* an escaped key is compared decoded */
    AT("{\"sessio\\u006e\": {\"ttl\": 1}}", true, 1, 19, 1, 26, "session", "ttl");
    AT("{\"a\\\"b\": 1}", true, 1, 2, 1, 10, "a\"b");
    AT("{\"a\\\"b\": 1}", false, 1, 1, 1, 1, "a\\\"b");
    /* an object skipped inside an array inside an object */
    AT("{\"o\": {\"l\": [{\"k\": 1}]}, \"k\": 3}", true, 1, 26, 1, 31, "k");
}

static void test_utf8(void)
{
    /* columns count characters: é is 2 bytes, € 3, 😀 4, each one column */
    AT("{\"é\": 1, \"k\": 2}", true, 1, 10, 1, 15, "k");
    AT("{\"x\": \"€€\", \"k\": 2}", true, 1, 13, 1, 18, "k");
    AT("{\"x\": \"😀\", \"k\": 2}", true, 1, 12, 1, 17, "k");
    /* and a UTF-8 key itself is found */
    AT("{\"x\": 1, \"é\": 2}", true, 1, 10, 1, 15, "é");
    /* a new line starts the count again */
    AT("{\"x\": \"ééé\",\n \"k\": 2}", true, 2, 2, 2, 7, "k");
}

static void test_absent(void)
{
    /* absent: both positions at the top-level value, never at a parent */
    AT("{\"a\": 1}", false, 1, 1, 1, 1, "b");
    AT("\n\n   {\"a\": {\"b\": 1}}", false, 3, 4, 3, 4, "a", "c");
    AT("{\"a\": 1}", false, 1, 1, 1, 1, "a", "b"); /* a is no object */
    AT("{\"a\": [ {\"b\": 1} ]}", false, 1, 1, 1, 1, "a", "b");
    AT("{}", false, 1, 1, 1, 1, "a");
    AT("[1, 2]", false, 1, 1, 1, 1, "a");
    AT("", false, 1, 1, 1, 1, "a");
    AT("  ", false, 1, 3, 1, 3, "a");

    /* depth 0 is the top-level value itself */
    struct jsonpos k, v;
    CHECK(jsonpos_find("\n  {}", 5, NULL, 0, &k, &v));
    CHECK(k.line == 2 && k.col == 3 && v.line == 2 && v.col == 3);
}

/* Every prefix of a text, in a buffer of exactly that size: no read past it, and
 * a member is found once the text reaches the ':' after its key. */
static void test_truncated(void)
{
    static const char text[] =
        "{\"a\\u0062\": \"x\\\"{[\", \"l\": [1, {\"y\": \"é\"}], \"o\": {\"k\": 12}}";
    static const char *const path[] = {"o", "k"};
    size_t full = sizeof(text) - 1;
    for (size_t n = 0; n <= full; n++) {
        char *copy = malloc(n ? n : 1);
        CHECK(copy != NULL);
        if (copy == NULL) {
            return;
        }
        memcpy(copy, text, n);
        struct jsonpos k, v;
        bool found = jsonpos_find(copy, n, path, 2, &k, &v);
        /* the ':' after "k" is byte 53 of the text */
        CHECK(found == (n >= 54));
        if (found) {
            /* cut before the space, the value's place is where the text ends */
            CHECK(k.line == 1 && k.col == 50 && v.line == 1 && v.col == (n == 54 ? 54 : 55));
        } else {
            CHECK(k.line == 1 && k.col == 1 && v.line == 1 && v.col == 1);
        }
        free(copy);
    }
}

int main(void)
{
    test_top_level();
    test_nested();
    test_skipping();
    test_utf8();
    test_absent();
    test_truncated();
    return check_summary("test_jsonpos");
}

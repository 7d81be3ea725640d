/* fuzz_cookie.c - libFuzzer target for the parsers of bytes a client or Redis
 * controls outside SPOP: the session cookie (sid_parse, sid_record_of, "1" and
 * "2" formats), the session record value and the admin-state value (model.c).
 * Invariants: no crash or over-read (ASan), a cookie that parses re-issues to
 * itself, and a parsed record's views stay inside the input.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"
#include "sid.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct sid_keys keys;
    static int ready;
    if (!ready) {
        const char cur[] = "fuzzing-secret-current-0123", prev[] = "fuzzing-secret-previous-01";
        if (sid_keys_set(&keys, (const uint8_t *)cur, strlen(cur), (const uint8_t *)prev,
                         strlen(prev)) != 0) {
            abort();
        }
        ready = 1;
    }
    /* a private copy, exactly size bytes: ASan sees any read past it */
    char *s = malloc(size ? size : 1);
    if (s == NULL) {
        return 0;
    }
    memcpy(s, data, size);
    struct sid_cookie ck;
    if (sid_parse(&keys, s, size, &ck) && ck.kind == SID_KIND_SESSION && !ck.prev_secret) {
        char again[SID_BUF];
        if (sid_issue(&keys, &ck, again) != (int)size || memcmp(again, s, size) != 0) {
            abort(); /* one canonical spelling per cookie */
        }
    }
    char rid[SID_BUF], legacy[SID_BUF];
    (void)sid_record_of(s, size, rid, legacy);
    struct model_record r;
    if (model_record_parse(s, size, &r) == 0) {
        if (r.server < s || r.server + r.server_len > s + size || r.inst < s ||
            r.inst + r.inst_len > s + size) {
            abort();
        }
    }
    enum model_state adm;
    int64_t dl;
    bool close_at;
    (void)model_parse_state(s, size, &adm, &dl, &close_at);
    free(s);
    return 0;
}

/* builtin.c - the diagnostic handlers "echo" and "ping" (see builtin.h).
 * Synchronous; they must never keep a pointer into the message past the call.
 */
#include "builtin.h"

#include <string.h>

#include "req.h"
#include "util.h"

/* HAProxy variable names are short; a longer arg name is not echoed. */
#define BUILTIN_NAME_MAX 128

static void echo_handler(struct req *r, const struct spop_msg *m, void *arg)
{
    UNUSED(arg);
    for (unsigned i = 0; i < m->nargs; i++) {
        struct spop_str key = m->args[i].key;
        const struct spop_data *val = &m->args[i].val;
        char name[BUILTIN_NAME_MAX];
        if (key.len == 0 || key.len >= sizeof(name)) {
            continue;
        }
        memcpy(name, key.ptr, key.len);
        name[key.len] = '\0';
        req_set_var(r, SPOP_SCOPE_TXN, name, val);
    }
    req_done(r);
}

static void ping_handler(struct req *r, const struct spop_msg *m, void *arg)
{
    UNUSED(m);
    UNUSED(arg);
    req_set_var_int(r, "pong", 1);
    req_done(r);
}

int builtin_register(void)
{
    if (req_register("echo", echo_handler, NULL) != 0 ||
        req_register("ping", ping_handler, NULL) != 0) {
        return -1;
    }
    return 0;
}

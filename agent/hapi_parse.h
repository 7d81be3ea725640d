/* hapi_parse.h - the replies of HAProxy's runtime API, parsed; and the step that
 * installs them into the servers view (servers.h).
 *
 * No I/O: no sockets, no libev, no Redis, no logging. Input is a reply as bytes
 * (a view, never modified); output is a struct hapi_table, or an error message
 * in a caller's buffer. hapi.c fetches the replies, the unit tests and
 * tests/fuzz/fuzz_hapi.c feed them from literal bytes.
 */
#ifndef STICKYD_HAPI_PARSE_H
#define STICKYD_HAPI_PARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "servers.h"

/* The "Pid: N" line of a "show info" reply; 0 when absent or malformed. */
long hapi_parse_info_pid(const char *text, size_t len);

/* HAProxy 2.6 srv_op_state / srv_admin_state (include/haproxy/server-t.h). */
#define HAPI_OP_STOPPED 0u
#define HAPI_OP_STARTING 1u
#define HAPI_OP_RUNNING 2u
#define HAPI_OP_STOPPING 3u
#define HAPI_ADMF_FMAINT 0x01u
#define HAPI_ADMF_IMAINT 0x02u
#define HAPI_ADMF_CMAINT 0x04u /* "disabled" in the config; stays after "state ready" */
#define HAPI_ADMF_FDRAIN 0x08u
#define HAPI_ADMF_IDRAIN 0x10u
#define HAPI_ADMF_RMAINT 0x20u
#define HAPI_ADMF_HMAINT 0x40u /* FQDN set from the CLI: not a maintenance state */
#define HAPI_ADMF_MAINT (HAPI_ADMF_FMAINT | HAPI_ADMF_IMAINT | HAPI_ADMF_RMAINT)
#define HAPI_ADMF_DRAIN (HAPI_ADMF_FDRAIN | HAPI_ADMF_IDRAIN)

/* MAINT if any maintenance flag; else DOWN if stopped; else DRAIN if any drain
 * flag or soft-stopping; else READY. Pure. */
enum model_state hapi_parse_map_state(unsigned op_state, unsigned admin_state);

/* One server as parsed: the backend it belongs to and its view entry. */
struct hapi_row {
    char backend[SRV_NAME_MAX];
    bool http; /* the backend's mode is http or unknown (srv_backend.http) */
    struct srv srv;
};

/* Rows in the order HAProxy listed them. Owns rows; free with hapi_parse_table_release. */
struct hapi_table {
    struct hapi_row *rows;
    size_t n, cap;
    size_t skipped; /* rows whose names do not fit SRV_NAME_MAX */
};

void hapi_parse_table_release(struct hapi_table *t);

/* Split the output of a batch into the reply of its first command (lines up
 * to the first empty line, which ends every reply) and the rest. Returns 0
 * with *reply, *rlen (without the empty line) and *rest, *restlen, or -1 when
 * no empty line terminates the first reply (truncated output). Pure. */
int hapi_parse_split_reply(const char *text, size_t len, const char **reply, size_t *rlen,
                           const char **rest, size_t *restlen) __attribute__((warn_unused_result));

/* Append the servers of a "show servers state" reply (format version 1,
 * columns found by their header names) to t. 0, or -1 with a message in err
 * and t unchanged (a malformed line rejects the whole reply: a partial view
 * would look like vanished servers). Pure. */
int hapi_parse_servers_state(const char *text, size_t len, struct hapi_table *t, char *err,
                             size_t errlen) __attribute__((warn_unused_result));

/* Fill srv.scur and http in t from a "show stat" CSV reply (columns pxname,
 * svname, scur and, when present, mode found by header name; http is cleared
 * only for a mode other than "http", so a version without the column keeps
 * every backend). FRONTEND/BACKEND rows and rows absent from t are ignored.
 * 0, or -1 with a message in err (t's scur values then unspecified). Pure. */
int hapi_parse_stat(const char *text, size_t len, struct hapi_table *t, char *err, size_t errlen)
    __attribute__((warn_unused_result));

/* Install t into the servers view: one servers_set_backend + servers_set_http
 * per backend (http unless one of its rows says otherwise), then
 * servers_retain of exactly those backends. 0 or -1. */
int hapi_parse_install(const struct hapi_table *t) __attribute__((warn_unused_result));

#endif

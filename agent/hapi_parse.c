/* hapi_parse.c - parsers of the runtime API's replies, and their installation.
 *
 * Owns the formats HAProxy writes: the empty line that ends each reply of a
 * batch, "show servers state" (format 1, space-separated, columns by header
 * name), the "show stat" CSV and the Pid line of "show info". A malformed reply is
 * refused whole. Does no I/O: hapi.c brings the bytes and calls hapi_parse_install.
 */
#include "hapi_parse.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum model_state hapi_parse_map_state(unsigned op_state, unsigned admin_state)
{
    if (admin_state & HAPI_ADMF_MAINT) {
        return MODEL_MAINT;
    }
    /* A drained server that fails its checks is of no use to pinned sessions
     * either: HAProxy itself shows it DOWN, and so do we. */
    if (op_state == HAPI_OP_STOPPED) {
        return MODEL_DOWN;
    }
    if ((admin_state & HAPI_ADMF_DRAIN) || op_state == HAPI_OP_STOPPING) {
        return MODEL_DRAIN;
    }
    return MODEL_READY;
}

void hapi_parse_table_release(struct hapi_table *t)
{
    free(t->rows);
    t->rows = NULL;
    t->n = t->cap = 0;
    t->skipped = 0;
}

/* Next line of [*p, end): sets *line, *llen (without '\n'), advances *p.
 * false at the end. A last line without '\n' still counts. */
static bool next_line(const char **p, const char *end, const char **line, size_t *llen)
{
    if (*p >= end) {
        return false;
    }
    const char *nl = memchr(*p, '\n', (size_t)(end - *p));
    *line = *p;
    if (nl == NULL) {
        *llen = (size_t)(end - *p);
        *p = end;
    } else {
        *llen = (size_t)(nl - *p);
        *p = nl + 1;
    }
    return true;
}

int hapi_parse_split_reply(const char *text, size_t len, const char **reply, size_t *rlen,
                           const char **rest, size_t *restlen)
{
    const char *p = text, *end = text + len, *line;
    size_t llen;
    while (next_line(&p, end, &line, &llen)) {
        /* only a real empty line ends a reply; a final unterminated "" is not one */
        if (llen == 0 && line < end && *line == '\n') {
            *reply = text;
            *rlen = (size_t)(line - text);
            *rest = p;
            *restlen = (size_t)(end - p);
            return 0;
        }
    }
    return -1;
}

/* Next data line of a tabular reply: like next_line, but passes over empty and
 * '#' comment lines, counting every line read in *lineno for error messages. */
static bool next_row(const char **p, const char *end, const char **line, size_t *llen,
                     size_t *lineno)
{
    while (next_line(p, end, line, llen)) {
        (*lineno)++;
        if (*llen > 0 && (*line)[0] != '#') {
            return true;
        }
    }
    return false;
}

/* Every line HAProxy writes ends with '\n': one that does not was cut short,
 * and its last field (a weight, a count) may be missing digits. */
static bool complete(const char *line, size_t llen, const char *end)
{
    return line + llen < end && line[llen] == '\n';
}

struct field {
    const char *ptr;
    size_t len;
};

/* Split a line on runs of spaces. Returns the number of fields, at most max
 * (extra fields are ignored). */
static size_t split_spaces(const char *s, size_t len, struct field *f, size_t max)
{
    size_t n = 0, i = 0;
    while (i < len && n < max) {
        while (i < len && s[i] == ' ') {
            i++;
        }
        if (i == len) {
            break;
        }
        size_t start = i;
        while (i < len && s[i] != ' ') {
            i++;
        }
        f[n].ptr = s + start;
        f[n].len = i - start;
        n++;
    }
    return n;
}

static bool field_is(const struct field *f, const char *name)
{
    size_t n = strlen(name);
    return f->len == n && memcmp(f->ptr, name, n) == 0;
}

/* Header lookup shared by both tabular replies: the index of the first header
 * field called name, or SIZE_MAX when there is none. */
static size_t column_index(const struct field *hdr, size_t nh, const char *name)
{
    for (size_t i = 0; i < nh; i++) {
        if (field_is(&hdr[i], name)) {
            return i;
        }
    }
    return SIZE_MAX;
}

/* Owns the mandatory-column check of both tabular replies: sets col[c] to the
 * index of names[c] for each of the n names and *need to the field count a data
 * line must reach to hold them all. -1 with "<what>: no column X" in err when
 * one is missing. */
__attribute__((warn_unused_result)) static int
find_columns(const struct field *hdr, size_t nh, const char *const *names, size_t n,
             size_t *col, size_t *need, const char *what, char *err, size_t errlen)
{
    *need = 0;
    for (size_t c = 0; c < n; c++) {
        col[c] = column_index(hdr, nh, names[c]);
        if (col[c] == SIZE_MAX) {
            snprintf(err, errlen, "%s: no column %s", what, names[c]);
            return -1;
        }
        if (col[c] + 1 > *need) {
            *need = col[c] + 1;
        }
    }
    return 0;
}

/* Decimal unsigned of at most 10 digits that fits uint32_t. */
static bool field_u32(const struct field *f, uint32_t *out)
{
    if (f->len == 0 || f->len > 10) {
        return false;
    }
    uint64_t v = 0;
    for (size_t i = 0; i < f->len; i++) {
        if (f->ptr[i] < '0' || f->ptr[i] > '9') {
            return false;
        }
        v = v * 10 + (uint64_t)(f->ptr[i] - '0');
    }
    if (v > UINT32_MAX) {
        return false;
    }
    *out = (uint32_t)v;
    return true;
}

/* Names go into fixed SRV_NAME_MAX arrays (C strings) and later into commands: a NUL or
 * another control byte, which HAProxy never puts in a name, would truncate or forge one. */
static bool name_fits(const struct field *f)
{
    if (f->len == 0 || f->len >= SRV_NAME_MAX) {
        return false;
    }
    for (size_t i = 0; i < f->len; i++) {
        unsigned char c = (unsigned char)f->ptr[i];
        if (c < 0x20 || c == 0x7f) {
            return false;
        }
    }
    return true;
}

static int table_push(struct hapi_table *t, const struct hapi_row *r)
{
    if (t->n == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 16;
        struct hapi_row *rows = realloc(t->rows, cap * sizeof(*rows));
        if (rows == NULL) {
            return -1;
        }
        t->rows = rows;
        t->cap = cap;
    }
    t->rows[t->n++] = *r;
    return 0;
}

/* How a reply's data line is cut into fields: split_spaces or split_csv. */
typedef size_t (*split_fn)(const char *s, size_t len, struct field *f, size_t max);

/* Owns the checks every data line of both tabular replies passes: the line,
 * cut by split into at most max fields (*nf), refused when cut short (no '\n'
 * before end) or when it has fewer than need fields. -1 with "<what>: line N:
 * ..." in err. */
__attribute__((warn_unused_result)) static int
split_row(const char *line, size_t llen, const char *end, split_fn split, struct field *f,
          size_t max, size_t *nf, size_t need, const char *what, size_t lineno, char *err,
          size_t errlen)
{
    *nf = split(line, llen, f, max);
    if (!complete(line, llen, end)) {
        snprintf(err, errlen, "%s: line %zu: truncated", what, lineno);
        return -1;
    }
    if (*nf < need) {
        snprintf(err, errlen, "%s: line %zu: %zu fields, need %zu", what, lineno, *nf, need);
        return -1;
    }
    return 0;
}

#define STATE_MAX_FIELDS 64

int hapi_parse_servers_state(const char *text, size_t len, struct hapi_table *t, char *err,
                             size_t errlen)
{
    const char *p = text, *end = text + len, *line;
    size_t llen, lineno = 1;
    size_t n0 = t->n, skipped0 = t->skipped;
    if (!next_line(&p, end, &line, &llen)) {
        snprintf(err, errlen, "show servers state: empty reply");
        return -1;
    }
    if (llen != 1 || line[0] != '1') {
        snprintf(err, errlen, "show servers state: unsupported format or error: %.*s",
                 (int)(llen > 120 ? 120 : llen), line);
        return -1;
    }
    lineno++;
    if (!next_line(&p, end, &line, &llen) || llen < 2 || line[0] != '#' ||
        !complete(line, llen, end)) {
        snprintf(err, errlen, "show servers state: line 2: no complete '#' header");
        return -1;
    }
    struct field hdr[STATE_MAX_FIELDS];
    size_t nh = split_spaces(line + 1, llen - 1, hdr, STATE_MAX_FIELDS);
    enum { C_BE, C_SRV, C_OP, C_ADMIN, C_UWEIGHT, C_COUNT };
    static const char *const col_names[C_COUNT] = {"be_name", "srv_name", "srv_op_state",
                                                   "srv_admin_state", "srv_uweight"};
    size_t col[C_COUNT], need;
    if (find_columns(hdr, nh, col_names, C_COUNT, col, &need, "show servers state", err,
                     errlen) < 0) {
        return -1;
    }
    while (next_row(&p, end, &line, &llen, &lineno)) {
        struct field f[STATE_MAX_FIELDS];
        size_t nf;
        uint32_t op, admin, weight;
        if (split_row(line, llen, end, split_spaces, f, STATE_MAX_FIELDS, &nf, need,
                      "show servers state", lineno, err, errlen) < 0) {
            goto err_rollback;
        }
        if (!field_u32(&f[col[C_OP]], &op) || op > HAPI_OP_STOPPING ||
            !field_u32(&f[col[C_ADMIN]], &admin) || !field_u32(&f[col[C_UWEIGHT]], &weight)) {
            snprintf(err, errlen, "show servers state: line %zu: bad state or weight", lineno);
            goto err_rollback;
        }
        if (!name_fits(&f[col[C_BE]]) || !name_fits(&f[col[C_SRV]])) {
            t->skipped++;
            continue;
        }
        struct hapi_row r;
        memset(&r, 0, sizeof(r));
        memcpy(r.backend, f[col[C_BE]].ptr, f[col[C_BE]].len);
        memcpy(r.srv.name, f[col[C_SRV]].ptr, f[col[C_SRV]].len);
        r.http = true; /* until "show stat" tells the mode */
        r.srv.weight = weight;
        r.srv.state = hapi_parse_map_state(op, admin);
        if (table_push(t, &r) < 0) {
            snprintf(err, errlen, "show servers state: out of memory");
            goto err_rollback;
        }
    }
    return 0;

err_rollback:
    t->n = n0;
    t->skipped = skipped0;
    return -1;
}

/* Split one CSV line, honouring "quoted, fields" with "" escapes as HAProxy's
 * csv_enc writes them. Field views of quoted fields keep their quotes (the
 * columns we read are never quoted). Returns the field count, at most max. */
static size_t split_csv(const char *s, size_t len, struct field *f, size_t max)
{
    size_t n = 0, i = 0;
    while (n < max) {
        size_t start = i;
        if (i < len && s[i] == '"') {
            i++;
            while (i < len) {
                if (s[i] == '"') {
                    if (i + 1 < len && s[i + 1] == '"') {
                        i += 2;
                        continue;
                    }
                    i++;
                    break;
                }
                i++;
            }
        }
        while (i < len && s[i] != ',') {
            i++;
        }
        f[n].ptr = s + start;
        f[n].len = i - start;
        n++;
        if (i >= len) {
            break;
        }
        i++; /* the comma */
    }
    return n;
}

#define STAT_MAX_FIELDS 256

static struct hapi_row *table_find(struct hapi_table *t, size_t *hint, const struct field *be,
                                   const struct field *sv)
{
    for (size_t k = 0; k < t->n; k++) {
        /* "show stat" lists servers in "show servers state" order: try the
         * row after the previous match first, so the scan is linear. */
        size_t i = (*hint + k) % t->n;
        struct hapi_row *r = &t->rows[i];
        if (strlen(r->backend) == be->len && memcmp(r->backend, be->ptr, be->len) == 0 &&
            strlen(r->srv.name) == sv->len && memcmp(r->srv.name, sv->ptr, sv->len) == 0) {
            *hint = i + 1;
            return r;
        }
    }
    return NULL;
}

int hapi_parse_stat(const char *text, size_t len, struct hapi_table *t, char *err, size_t errlen)
{
    const char *p = text, *end = text + len, *line = text;
    size_t llen = 0, lineno = 1;
    if (!next_line(&p, end, &line, &llen) || llen < 2 || line[0] != '#' ||
        !complete(line, llen, end)) {
        snprintf(err, errlen, "show stat: no complete '# pxname,...' header: %.*s",
                 (int)(llen > 120 ? 120 : llen), line);
        return -1;
    }
    const char *h = line + 1;
    size_t hlen = llen - 1;
    while (hlen > 0 && *h == ' ') {
        h++;
        hlen--;
    }
    struct field hdr[STAT_MAX_FIELDS];
    size_t nh = split_csv(h, hlen, hdr, STAT_MAX_FIELDS);
    enum { C_PX, C_SV, C_SCUR, C_COUNT };
    static const char *const col_names[C_COUNT] = {"pxname", "svname", "scur"};
    size_t col[C_COUNT], need;
    if (find_columns(hdr, nh, col_names, C_COUNT, col, &need, "show stat", err, errlen) < 0) {
        return -1;
    }
    /* optional: without it every backend is taken for a WebSocket one */
    size_t col_mode = column_index(hdr, nh, "mode");
    /* optional: the server line's maxconn, a fleet-wide cap by default (issue 13) */
    size_t col_slim = column_index(hdr, nh, "slim");
    size_t hint = 0;
    while (next_row(&p, end, &line, &llen, &lineno)) {
        struct field f[STAT_MAX_FIELDS];
        size_t nf;
        if (split_row(line, llen, end, split_csv, f, STAT_MAX_FIELDS, &nf, need, "show stat",
                      lineno, err, errlen) < 0) {
            return -1;
        }
        if (field_is(&f[col[C_SV]], "FRONTEND") || field_is(&f[col[C_SV]], "BACKEND")) {
            continue;
        }
        struct hapi_row *r = table_find(t, &hint, &f[col[C_PX]], &f[col[C_SV]]);
        if (r == NULL) {
            continue; /* a listener ("show stat" lists them too) or a skipped name */
        }
        uint32_t scur;
        if (!field_u32(&f[col[C_SCUR]], &scur)) {
            snprintf(err, errlen, "show stat: line %zu: bad scur '%.*s'", lineno,
                     (int)(f[col[C_SCUR]].len > 20 ? 20 : f[col[C_SCUR]].len),
                     f[col[C_SCUR]].ptr);
            return -1;
        }
        r->srv.scur = scur;
        uint32_t slim = 0;
        r->srv.maxconn = col_slim < nf && f[col_slim].len > 0 && field_u32(&f[col_slim], &slim)
                             ? slim
                             : 0;
        /* an empty or missing mode field is unknown, which keeps the backend */
        if (col_mode < nf && f[col_mode].len > 0) {
            r->http = field_is(&f[col_mode], "http");
        }
    }
    return 0;
}

long hapi_parse_info_pid(const char *text, size_t len)
{
    const char *p = text, *end = text + len, *line;
    size_t llen;
    while (next_line(&p, end, &line, &llen)) {
        if (llen > 5 && llen < 5 + 11 && memcmp(line, "Pid: ", 5) == 0) {
            long pid = 0;
            for (size_t i = 5; i < llen; i++) {
                if (line[i] < '0' || line[i] > '9') {
                    return 0;
                }
                pid = pid * 10 + (line[i] - '0');
            }
            return pid;
        }
    }
    return 0;
}

/* ---------------------------------------------------------------------------
 * Installing a parsed table into the servers view
 * ------------------------------------------------------------------------- */

int hapi_parse_install(const struct hapi_table *t)
{
    int rc = -1;
    struct srv *srvs = malloc((t->n ? t->n : 1) * sizeof(*srvs));
    bool *done = calloc(t->n ? t->n : 1, sizeof(*done));
    const char **keep = malloc((t->n ? t->n : 1) * sizeof(*keep));
    size_t nkeep = 0;
    if (srvs == NULL || done == NULL || keep == NULL) {
        goto cleanup;
    }
    /* Group by backend in order of first appearance (HAProxy lists each
     * backend's servers together; this does not rely on it). */
    for (size_t i = 0; i < t->n; i++) {
        if (done[i]) {
            continue;
        }
        size_t k = 0;
        bool http = true;
        for (size_t j = i; j < t->n; j++) {
            if (!done[j] && strcmp(t->rows[j].backend, t->rows[i].backend) == 0) {
                srvs[k++] = t->rows[j].srv;
                http = http && t->rows[j].http;
                done[j] = true;
            }
        }
        if (servers_set_backend(t->rows[i].backend, srvs, k) < 0 ||
            servers_set_http(t->rows[i].backend, http) < 0) {
            goto cleanup;
        }
        keep[nkeep++] = t->rows[i].backend;
    }
    servers_retain(keep, nkeep);
    rc = 0;

cleanup:
    free(keep);
    free(done);
    free(srvs);
    return rc;
}

/* session_fill.c - writes real-shaped session records as RESP, for `redis-cli --pipe`.
 *
 * The benchmarks need a session table of a given size fast, with records exactly
 * like the ones the decision script writes (agent/assign.c, README "Redis keys"):
 *   <prefix>{<backend>}:s:<id>  hash  server created seen reconnects inst   + PEXPIRE
 * Ids are minted with the agent's own secret (sid.h), so they are valid cookies,
 * or derived from keys "<key-prefix><n>" (-K) so a key-affinity load can find them.
 * Writes to stdout only: no sockets, no Redis library.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sid.h"

#define OUT_CAP (1u << 20)

struct out {
    char buf[OUT_CAP];
    size_t len;
};

static struct out w;

static int out_flush(void)
{
    if (w.len > 0 && fwrite(w.buf, 1, w.len, stdout) != w.len) {
        return -1;
    }
    w.len = 0;
    return 0;
}

/* One RESP bulk string. The caller keeps every command far below OUT_CAP. */
static void out_bulk(const char *s, size_t len)
{
    w.len += (size_t)snprintf(w.buf + w.len, OUT_CAP - w.len, "$%zu\r\n", len);
    memcpy(w.buf + w.len, s, len);
    w.len += len;
    memcpy(w.buf + w.len, "\r\n", 2);
    w.len += 2;
}

static void out_cstr(const char *s)
{
    out_bulk(s, strlen(s));
}

static void out_argc(unsigned n)
{
    w.len += (size_t)snprintf(w.buf + w.len, OUT_CAP - w.len, "*%u\r\n", n);
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: session_fill -f SECRET_FILE -n COUNT [-b BACKEND] [-p PREFIX] [-t TTL_MS]\n"
            "                    [-i INST] [-S s1,s2,...] [-K KEY_PREFIX [-x SKIP]] [-o OFFSET]\n"
            "  writes COUNT session records as RESP (HSET + PEXPIRE) on stdout\n"
            "  -f FILE   the agent's session secret (ids are minted with it)\n"
            "  -K PFX    ids derived from keys PFX1..PFXn instead of minted cookies\n"
            "  -x SKIP   with -K: leave out every key whose n is a multiple of SKIP, so a\n"
            "            load over PFX%%n finds 1 in SKIP sessions new\n"
            "  -o OFF    start minting nonces at OFF (distinct tables from one secret)\n"
            "  defaults: backend ws, prefix sticky:, ttl 86400000, inst bench, servers s1,s2,s3\n");
}

int main(int argc, char **argv)
{
    const char *secret = NULL, *backend = "ws", *prefix = "sticky:", *inst = "bench";
    const char *servers_arg = "s1,s2,s3", *key_prefix = NULL;
    unsigned long long count = 0, skip = 0, offset = 0, ttl = 86400000ull;
    int opt;
    while ((opt = getopt(argc, argv, "f:n:b:p:t:i:S:K:x:o:h")) != -1) {
        switch (opt) {
        case 'f':
            secret = optarg;
            break;
        case 'n':
            count = strtoull(optarg, NULL, 10);
            break;
        case 'b':
            backend = optarg;
            break;
        case 'p':
            prefix = optarg;
            break;
        case 't':
            ttl = strtoull(optarg, NULL, 10);
            break;
        case 'i':
            inst = optarg;
            break;
        case 'S':
            servers_arg = optarg;
            break;
        case 'K':
            key_prefix = optarg;
            break;
        case 'x':
            skip = strtoull(optarg, NULL, 10);
            break;
        case 'o':
            offset = strtoull(optarg, NULL, 10);
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (secret == NULL || count == 0 || ttl == 0 || optind != argc) {
        usage(stderr);
        return 2;
    }

    static struct sid_keys keys; /* 8 KiB: not on the stack */
    char err[256];
    if (sid_keys_load(&keys, secret, NULL, err, sizeof(err)) != 0) {
        fprintf(stderr, "session_fill: %s\n", err);
        return 2;
    }
    /* Servers, round-robin: the record's server is one the backend really has. */
    char *srv_copy = strdup(servers_arg);
    const char *servers[64];
    unsigned nsrv = 0;
    for (char *t = strtok(srv_copy, ","); t != NULL && nsrv < 64; t = strtok(NULL, ",")) {
        servers[nsrv++] = t;
    }
    if (nsrv == 0) {
        fprintf(stderr, "session_fill: no servers\n");
        return 2;
    }

    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    char nows[24], ttls[24];
    snprintf(nows, sizeof(nows), "%lld", (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000);
    snprintf(ttls, sizeof(ttls), "%llu", ttl);

    char key[512], id[SID_BUF], kbuf[256];
    unsigned long long written = 0;
    for (unsigned long long n = 1; written < count; n++) {
        int idl;
        if (key_prefix != NULL) {
            if (skip > 0 && n % skip == 0) {
                continue;
            }
            int kl = snprintf(kbuf, sizeof(kbuf), "%s%llu", key_prefix, n);
            idl = sid_from_key(&keys, false, kbuf, (size_t)kl, id);
        } else {
            /* Distinct nonces without a CSPRNG call each: the tag still makes every
             * id a valid, unguessable-looking cookie for this secret. */
            uint8_t nonce[SID_NONCE_LEN] = {0};
            unsigned long long v = n + offset;
            memcpy(nonce, &v, sizeof(v));
            memcpy(nonce + 8, "stickyfl", 8);
            idl = sid_mint_nonce(&keys, nonce, id);
        }
        if (idl <= 0) {
            fprintf(stderr, "session_fill: cannot make an id\n");
            return 1;
        }
        int kl = snprintf(key, sizeof(key), "%s{%s}:s:%.*s", prefix, backend, idl, id);
        out_argc(12);
        out_cstr("HSET");
        out_bulk(key, (size_t)kl);
        out_cstr("server");
        out_cstr(servers[written % nsrv]);
        out_cstr("created");
        out_cstr(nows);
        out_cstr("seen");
        out_cstr(nows);
        out_cstr("reconnects");
        out_cstr("0");
        out_cstr("inst");
        out_cstr(inst);
        out_argc(3);
        out_cstr("PEXPIRE");
        out_bulk(key, (size_t)kl);
        out_cstr(ttls);
        written++;
        if (w.len > OUT_CAP - 4096 && out_flush() != 0) {
            fprintf(stderr, "session_fill: write: %s\n", strerror(errno));
            return 1;
        }
    }
    if (out_flush() != 0 || fflush(stdout) != 0) {
        fprintf(stderr, "session_fill: write: %s\n", strerror(errno));
        return 1;
    }
    sid_keys_wipe(&keys);
    free(srv_copy);
    return 0;
}

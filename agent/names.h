/* names.h - how long a backend or server name may be, everywhere in stickyd.
 *
 * Names go into fixed char arrays (the servers view, the ledger, fleet) and into
 * Redis keys (model.h). config.c refuses longer ones in the file, hapi_parse.c
 * skips them in HAProxy's replies. A constant with no code and no includes, so
 * that config.c and servers.h both see it without seeing each other.
 */
#ifndef STICKYD_NAMES_H
#define STICKYD_NAMES_H

/* Bytes of a name's array, its NUL included: a name is 1..NAMES_MAX-1 bytes. */
#define NAMES_MAX 64

#endif

/* jsonpos.h - where a member stands in a JSON text, as line:col, for error messages.
 *
 * jansson keeps no positions for the values it parsed, so a loader that rejects a
 * value (config.c) finds its key or value again in the source text with this small
 * scanner. Pure: no I/O, no allocation; it only reads text[0..len), never past it.
 */
#ifndef STICKYD_JSONPOS_H
#define STICKYD_JSONPOS_H

#include <stdbool.h>
#include <stddef.h>

/* A place in the text: line and column, both 1-based; the column counts UTF-8
 * characters, not bytes, as jansson's own error positions do. */
struct jsonpos {
    int line, col;
};

/* Find the member at path[0..depth) (keys from the top-level object down, as
 * decoded strings: a key written with escapes such as "sessio\u006e" matches
 * "session") in text[0..len). true when the whole path is there, with *key at the
 * opening quote of the last key and *val at the first character of its value;
 * the first of duplicate keys wins. Otherwise false, with *key and *val both at
 * the first character of the top-level value (never at a parent member, which
 * would mislead). depth 0 names the top-level value itself: true, both there.
 * The text is meant to be one jansson accepted; any other text gives positions
 * that mean nothing, but is read within its bounds all the same. path is only
 * read during the call. */
bool jsonpos_find(const char *text, size_t len, const char *const *path, size_t depth,
                  struct jsonpos *key, struct jsonpos *val);

#endif

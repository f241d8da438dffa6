/*
 * json.h: JSON text for the log: a string quoted and escaped. Pure.
 *
 * Whatever the bytes (a client's path, a header, a Lua message), the result is
 * one valid JSON string on one line: quotes, backslashes and every control
 * character are escaped (so no client can end a log line or forge another),
 * and bytes that are not valid UTF-8 become U+FFFD, one per bad byte.
 */
#ifndef WS_JSON_H
#define WS_JSON_H

#include <stddef.h>

#include "buf.h"

/* Append s[0..n) to b as a quoted JSON string. */
void ws_json_quote(ws_buf_t *b, const char *s, size_t n);

#endif

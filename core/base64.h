/* base64.h: RFC 4648 base64 (standard alphabet, '=' padding). Pure. */
#ifndef WS_BASE64_H
#define WS_BASE64_H

#include <stddef.h>
#include <stdint.h>

/* Encode n bytes into out, which needs room for 4*((n+2)/3)+1 bytes; writes a NUL.
 * Returns the encoded length (without the NUL). */
size_t ws_base64_encode(const uint8_t *p, size_t n, char *out);

/* Decode s[0..n) (must be canonical: length a multiple of 4, padding only at
 * the end, only alphabet characters) into out (room for 3*n/4 bytes).
 * Returns the decoded length, or WS_EINVAL for malformed input. */
long ws_base64_decode(const char *s, size_t n, uint8_t *out);

#endif

/*
 * utf8.h: incremental UTF-8 validator (RFC 3629: no overlongs, no surrogates,
 * nothing above U+10FFFF). State survives across calls, so a code point may be
 * split between fragments; validation fails at the first byte that cannot
 * start or continue a valid sequence (fail fast), not at the end of the message.
 * Pure: no I/O, no allocation.
 */
#ifndef WS_UTF8_H
#define WS_UTF8_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    uint32_t state; /* 0 = at a code point boundary */
} ws_utf8_t;

void ws_utf8_init(ws_utf8_t *u);

/* Validate the next n bytes. Returns 0 if they are a valid continuation of the
 * text so far (possibly ending inside a code point), WS_EUTF8 at the first
 * invalid byte; after WS_EUTF8 the state stays failed. ASCII runs are checked
 * a word at a time. */
int ws_utf8_feed(ws_utf8_t *u, const uint8_t *p, size_t n);

/* 1 if the text fed so far ends on a code point boundary (a complete message is valid). */
int ws_utf8_complete(const ws_utf8_t *u);

/* Whole-buffer check: 1 if p[0..n) is valid UTF-8, else 0. */
int ws_utf8_valid(const uint8_t *p, size_t n);

#endif

/*
 * fuzz_deflate: permessage-deflate (RFC 7692) in core/deflate.c.
 *
 * Input: 4 parameter bytes, then data split at the first 0x00 into an offer
 * (Sec-WebSocket-Extensions value) and a payload.
 *   p[0]  server config: bits 0..2 server_max_window_bits (8 + n), bit 3
 *         server_no_context_takeover, bit 4 client_no_context_takeover,
 *         bits 5..7 client_max_window_bits (8 + n; 7 means 15)
 *   p[1]  chunk size seed for inflating; p[2] largest chunk (0: whole)
 *   p[3]  max_out for inflating arbitrary bytes (see pick_max)
 *
 * Checks:
 *   - negotiation: the response fits WS_DEFLATE_RESPONSE_MAX, is one
 *     permessage-deflate element with known, unrepeated parameters and values
 *     8..15, has no CR/LF, and agrees with the returned params;
 *   - round trip: the payload, compressed twice in a row by a codec with the
 *     agreed params (context takeover included), inflates back exactly;
 *   - inflating the payload as arbitrary compressed bytes, in chunks: only the
 *     documented errors, output bounded by max_out + 1, errors sticky;
 *   - memory accounting returns to its starting value after ws_deflate_close.
 */
#include "fuzz_util.h"

#include "buf.h"
#include "deflate.h"
#include "error.h"

static size_t pick_max(unsigned v)
{
    static const size_t sizes[] = {0, 1, 16, 125, 1024, 4096, 65536, 1 << 20};
    return sizes[v & 7];
}

/* Check a response string against params; returns nothing, aborts on error. */
static void check_response(const char *resp, const ws_deflate_params_t *p)
{
    size_t n = strlen(resp);
    FUZZ_CHECK(n < WS_DEFLATE_RESPONSE_MAX);
    FUZZ_CHECK(!strpbrk(resp, "\r\n,"));
    FUZZ_CHECK(!strncmp(resp, "permessage-deflate", 18));
    int seen_snct = 0, seen_cnct = 0, smwb = -1, cmwb = -1;
    const char *s = resp + 18;
    while (*s) {
        FUZZ_CHECK(*s == ';');
        s++;
        while (*s == ' ')
            s++;
        const char *k = s;
        while (*s && *s != ';' && *s != '=')
            s++;
        size_t kl = (size_t)(s - k);
        int val = -1;
        if (*s == '=') {
            s++;
            FUZZ_CHECK(*s >= '1' && *s <= '9');
            val = 0;
            while (*s >= '0' && *s <= '9')
                val = val * 10 + (*s++ - '0');
            FUZZ_CHECK(val >= 8 && val <= 15);
        }
#define KEY(lit) (kl == sizeof(lit) - 1 && !memcmp(k, lit, kl))
        if (KEY("server_no_context_takeover")) {
            FUZZ_CHECK(val < 0 && !seen_snct++);
        } else if (KEY("client_no_context_takeover")) {
            FUZZ_CHECK(val < 0 && !seen_cnct++);
        } else if (KEY("server_max_window_bits")) {
            FUZZ_CHECK(val >= 0 && smwb < 0);
            smwb = val;
        } else if (KEY("client_max_window_bits")) {
            FUZZ_CHECK(val >= 0 && cmwb < 0);
            cmwb = val;
        } else {
            FUZZ_CHECK(0 && "unknown parameter in the response");
        }
#undef KEY
    }
    FUZZ_CHECK(p->server_no_context_takeover == seen_snct);
    FUZZ_CHECK(p->client_no_context_takeover == seen_cnct);
    FUZZ_CHECK(p->server_max_window_bits >= 9 && p->server_max_window_bits <= 15);
    FUZZ_CHECK(p->client_max_window_bits >= 8 && p->client_max_window_bits <= 15);
    FUZZ_CHECK(smwb < 0 ? p->server_max_window_bits == 15 : p->server_max_window_bits == smwb);
    /* Without client_max_window_bits in the response the client keeps the bound
     * it offered (RFC 7692 7.1.2.2), so params may hold that value. */
    FUZZ_CHECK(cmwb < 0 || p->client_max_window_bits == cmwb);
}

static int inflate_err_ok(int rc)
{
    return rc == 0 || rc == WS_ETOOBIG || rc == WS_EINFLATE || rc == WS_ENOMEM;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 4)
        return 0;
    size_t mem0 = ws_deflate_mem_total();
    ws_deflate_config_t cfg;
    ws_deflate_config_default(&cfg);
    cfg.enabled = 1;
    cfg.server_max_window_bits = 8 + (data[0] & 7);
    cfg.server_no_context_takeover = (data[0] >> 3) & 1;
    cfg.client_no_context_takeover = (data[0] >> 4) & 1;
    cfg.client_max_window_bits = (data[0] >> 5) == 7 ? 15 : 8 + (data[0] >> 5);
    cfg.threshold = 0;
    fz_chunker_t ch;
    fz_chunker_init(&ch, data[1], data[2] ? data[2] : size);
    size_t max_out = pick_max(data[3]);
    data += 4;
    size -= 4;

    const uint8_t *z = memchr(data, 0, size);
    size_t olen = z ? (size_t)(z - data) : size;
    const uint8_t *payload = z ? z + 1 : data + size;
    size_t plen = z ? size - olen - 1 : 0;

    /* negotiation, with an exact-size offer and response buffer */
    char *offer = malloc(olen ? olen : 1);
    memcpy(offer, data, olen);
    char *resp = malloc(WS_DEFLATE_RESPONSE_MAX);
    memset(resp, 'x', WS_DEFLATE_RESPONSE_MAX);
    ws_deflate_params_t params;
    memset(&params, 0xAB, sizeof params);
    int rc = ws_deflate_negotiate(&cfg, offer, olen, &params, resp, WS_DEFLATE_RESPONSE_MAX);
    FUZZ_CHECK(rc == 0 || rc == 1);
    if (rc == 1) {
        check_response(resp, &params);
    } else {
        /* declined: params and resp untouched */
        for (size_t i = 0; i < sizeof params; i++)
            FUZZ_CHECK(((const uint8_t *)&params)[i] == 0xAB);
        for (size_t i = 0; i < WS_DEFLATE_RESPONSE_MAX; i++)
            FUZZ_CHECK(resp[i] == 'x');
        params.server_no_context_takeover = cfg.server_no_context_takeover;
        params.client_no_context_takeover = cfg.client_no_context_takeover;
        params.server_max_window_bits = cfg.server_max_window_bits < 9 ? 9 : cfg.server_max_window_bits;
        params.client_max_window_bits = 15;
    }
    FUZZ_CHECK(ws_deflate_negotiate(&cfg, offer, olen, &params, resp, WS_DEFLATE_RESPONSE_MAX - 1) ==
               WS_EINVAL);
    free(resp);
    free(offer);

    /* round trip: our compressor to a peer's inflater, two messages (context) */
    ws_deflate_t tx, rx;
    ws_deflate_init(&tx, &cfg, &params);
    /* rx plays the peer: its inflater must keep context exactly when our
     * compressor does, i.e. its "client" side is our server side. */
    ws_deflate_params_t peer = params;
    peer.client_no_context_takeover = params.server_no_context_takeover;
    ws_deflate_init(&rx, &cfg, &peer);
    for (int round = 0; round < 2; round++) {
        ws_buf_t c, back;
        ws_buf_init(&c);
        ws_buf_init(&back);
        int r = ws_deflate_compress(&tx, payload, plen, &c);
        FUZZ_CHECK(r == 0);
        FUZZ_CHECK(c.len >= 1);
        FUZZ_CHECK(c.len < 4 || memcmp(c.data + c.len - 4, "\x00\x00\xff\xff", 4) != 0);
        r = ws_deflate_inflate(&rx, c.data, c.len, plen, &back);
        FUZZ_CHECK(r == 0);
        FUZZ_CHECK(back.len == plen && (plen == 0 || !memcmp(back.data, payload, plen)));
        ws_buf_free(&c);
        ws_buf_free(&back);
    }
    ws_deflate_close(&tx);
    ws_deflate_close(&rx);
    FUZZ_CHECK(ws_deflate_mem(&tx) == 0 && ws_deflate_mem(&rx) == 0);

    /* arbitrary bytes as one compressed message, in chunks */
    ws_deflate_t in;
    ws_deflate_init(&in, &cfg, &params);
    ws_buf_t out;
    ws_buf_init(&out);
    size_t off = 0;
    int err = 0;
    while (off < plen && !err) {
        size_t n = fz_chunk_next(&ch);
        if (n > plen - off)
            n = plen - off;
        uint8_t *b = malloc(n);
        memcpy(b, payload + off, n);
        err = ws_deflate_inflate_chunk(&in, b, n, max_out, &out);
        free(b);
        FUZZ_CHECK(inflate_err_ok(err));
        FUZZ_CHECK(out.len <= max_out + 1);
        off += n;
    }
    if (!err) {
        err = ws_deflate_inflate_end(&in, max_out, &out);
        FUZZ_CHECK(inflate_err_ok(err));
        FUZZ_CHECK(out.len <= max_out + 1);
        FUZZ_CHECK(err != 0 || out.len <= max_out);
    }
    if (err) {
        /* sticky */
        FUZZ_CHECK(ws_deflate_inflate_chunk(&in, (const uint8_t *)"\x00", 1, max_out, &out) == err);
        FUZZ_CHECK(ws_deflate_inflate_end(&in, max_out, &out) == err);
    }
    ws_buf_free(&out);
    ws_deflate_close(&in);
    FUZZ_CHECK(ws_deflate_mem(&in) == 0);
    FUZZ_CHECK(ws_deflate_mem_total() == mem0);
    return 0;
}

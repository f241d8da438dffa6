#include "json.h"

#include "utf8.h"

/* Length of the UTF-8 sequence a lead byte starts (0: not a lead byte). */
static size_t seq_len(unsigned char c)
{
    if (c >= 0xc2 && c <= 0xdf)
        return 2;
    if (c >= 0xe0 && c <= 0xef)
        return 3;
    if (c >= 0xf0 && c <= 0xf4)
        return 4;
    return 0;
}

void ws_json_quote(ws_buf_t *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *p = (const unsigned char *)s;
    ws_buf_reserve(b, n + 2);
    ws_buf_append(b, "\"", 1);
    size_t run = 0; /* bytes from p[i - run] that go as they are */
    for (size_t i = 0; i < n;) {
        unsigned char c = p[i];
        size_t k = 1;
        const char *esc = NULL;
        char u[7];
        if (c >= 0x80) {
            k = seq_len(c);
            /* The validator knows overlongs, surrogates and the upper bound. */
            if (k && k <= n - i && ws_utf8_valid(p + i, k)) {
                run += k;
                i += k;
                continue;
            }
            k = 1;
            esc = "\xef\xbf\xbd"; /* U+FFFD, in place of the one bad byte */
        } else if (c == '"') {
            esc = "\\\"";
        } else if (c == '\\') {
            esc = "\\\\";
        } else if (c == '\n') {
            esc = "\\n";
        } else if (c == '\r') {
            esc = "\\r";
        } else if (c == '\t') {
            esc = "\\t";
        } else if (c < 0x20 || c == 0x7f) {
            u[0] = '\\', u[1] = 'u', u[2] = '0', u[3] = '0';
            u[4] = hex[c >> 4], u[5] = hex[c & 15], u[6] = '\0';
            esc = u;
        } else {
            run++;
            i++;
            continue;
        }
        ws_buf_append(b, p + i - run, run);
        run = 0;
        ws_buf_append_str(b, esc);
        i += k;
    }
    ws_buf_append(b, p + n - run, run);
    ws_buf_append(b, "\"", 1);
}

/* TLS contexts: the certificate and key checked at load, the protocol
 * settings, ALPN, session tickets under keys of ours. */
#include "tls_int.h"

#include <errno.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/core_names.h>
#include <openssl/x509v3.h>

#include "buf.h"

/* Mozilla's "intermediate" TLS 1.2 list: forward secret AEAD suites only. */
#define DEFAULT_CIPHERS                                                                          \
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"   \
    "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"     \
    "DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384"

/* OpenSSL's queue of errors as one line (the last, most specific, reason). */
static const char *ssl_reason(char *buf, size_t len)
{
    unsigned long e, last = 0;
    while ((e = ERR_get_error()) != 0)
        last = e;
    if (!last)
        return "unknown error";
    ERR_error_string_n(last, buf, len);
    /* "error:0A00018F:SSL routines::ee key too small": keep what follows "::" */
    char *p = strstr(buf, "::");
    return p ? p + 2 : buf;
}

static int readable(const char *opt, const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(err, errlen, "%s %s: %s", opt, path, strerror(errno));
        return 0;
    }
    fclose(f);
    return 1;
}

static ws_tls_ctx_t *wrap(SSL_CTX *ssl)
{
    ws_tls_ctx_t *c = ws_calloc(1, sizeof *c);
    c->ssl = ssl;
    c->refs = 1;
    SSL_CTX_set_app_data(ssl, c);
    return c;
}

void ws_tls_ctx_ref(ws_tls_ctx_t *c) { c->refs++; }

void ws_tls_ctx_free(ws_tls_ctx_t *c)
{
    if (!c || --c->refs > 0)
        return;
    SSL_CTX_free(c->ssl);
    OPENSSL_cleanse(&c->key, sizeof c->key);
    free(c);
}

void ws_tls_ticket_key_random(ws_tls_ticket_key_t *k)
{
    if (RAND_bytes((unsigned char *)k, sizeof *k) != 1)
        abort(); /* no randomness: nothing secure can follow */
}

/* Tickets sealed and opened with our key, not the context's own random one:
 * a reload makes a new context, and later workers run one each. */
static int ticket_cb(SSL *s, unsigned char name[16], unsigned char *iv, EVP_CIPHER_CTX *cctx,
                     EVP_MAC_CTX *hctx, int enc)
{
    ws_tls_ctx_t *c = SSL_CTX_get_app_data(SSL_get_SSL_CTX(s));
    ws_tls_ticket_key_t *k = &c->key;
    static char sha256[] = "SHA256";
    OSSL_PARAM mp[3];
    mp[0] = OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY, k->hmac, sizeof k->hmac);
    mp[1] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, sha256, 0);
    mp[2] = OSSL_PARAM_construct_end();
    if (enc) {
        if (RAND_bytes(iv, 16) != 1)
            return -1;
        memcpy(name, k->name, 16);
        if (EVP_EncryptInit_ex(cctx, EVP_aes_256_cbc(), NULL, k->aes, iv) != 1 ||
            EVP_MAC_CTX_set_params(hctx, mp) != 1)
            return -1;
        return 1;
    }
    if (memcmp(name, k->name, 16) != 0)
        return 0; /* not ours (an older key): a full handshake */
    if (EVP_DecryptInit_ex(cctx, EVP_aes_256_cbc(), NULL, k->aes, iv) != 1 ||
        EVP_MAC_CTX_set_params(hctx, mp) != 1)
        return -1;
    return 1;
}

/* Offer http/1.1 only; a client that offers neither goes on without ALPN. */
static int alpn_cb(SSL *s, const unsigned char **out, unsigned char *outlen, const unsigned char *in,
                   unsigned int inlen, void *arg)
{
    (void)s;
    (void)arg;
    static const unsigned char h11[] = "\x08http/1.1";
    unsigned char *sel;
    if (SSL_select_next_proto(&sel, outlen, h11, sizeof h11 - 1, in, inlen) != OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_NOACK;
    *out = sel;
    return SSL_TLSEXT_ERR_OK;
}

/* The certificate's validity as a warning line, or nothing. */
static void check_dates(SSL_CTX *ssl, const char *file, char *warn, size_t warnlen)
{
    X509 *x = SSL_CTX_get0_certificate(ssl);
    if (!x || !warn)
        return;
    const ASN1_TIME *after = X509_get0_notAfter(x), *before = X509_get0_notBefore(x);
    const char *what = NULL;
    const ASN1_TIME *when = NULL;
    if (X509_cmp_current_time(after) < 0)
        what = "expired on", when = after;
    else if (X509_cmp_current_time(before) > 0)
        what = "is not valid before", when = before;
    if (!what)
        return;
    char date[64] = "?";
    BIO *b = BIO_new(BIO_s_mem());
    if (b && ASN1_TIME_print(b, when)) {
        int n = BIO_read(b, date, sizeof date - 1);
        date[n > 0 ? n : 0] = '\0';
    }
    BIO_free(b);
    snprintf(warn, warnlen, "--tls-cert %s: the certificate %s %s: clients that verify will refuse it",
             file, what, date);
}

ws_tls_ctx_t *ws_tls_server_ctx(const ws_tls_server_opts_t *o, char *err, size_t errlen, char *warn,
                                size_t warnlen)
{
    char why[256];
    if (warn && warnlen)
        warn[0] = '\0';
    if (!readable("--tls-cert", o->cert_file, err, errlen) ||
        !readable("--tls-key", o->key_file, err, errlen))
        return NULL;
    ERR_clear_error();
    SSL_CTX *ssl = SSL_CTX_new(TLS_server_method());
    if (!ssl) {
        snprintf(err, errlen, "TLS: %s", ssl_reason(why, sizeof why));
        return NULL;
    }
    if (SSL_CTX_use_certificate_chain_file(ssl, o->cert_file) != 1) {
        snprintf(err, errlen, "--tls-cert %s: not a PEM certificate chain (%s)", o->cert_file,
                 ssl_reason(why, sizeof why));
        goto fail;
    }
    /* Read first, then use: OpenSSL refuses a key that does not match the
     * certificate while it loads it, and the two deserve different words. */
    FILE *kf = fopen(o->key_file, "r");
    EVP_PKEY *pk = kf ? PEM_read_PrivateKey(kf, NULL, NULL, NULL) : NULL;
    if (kf)
        fclose(kf);
    if (!pk) {
        snprintf(err, errlen, "--tls-key %s: not a PEM private key (%s)", o->key_file,
                 ssl_reason(why, sizeof why));
        goto fail;
    }
    int used = SSL_CTX_use_PrivateKey(ssl, pk);
    EVP_PKEY_free(pk);
    if (used != 1 || SSL_CTX_check_private_key(ssl) != 1) {
        ERR_clear_error();
        snprintf(err, errlen, "--tls-key %s does not match the certificate in --tls-cert %s", o->key_file,
                 o->cert_file);
        goto fail;
    }
    SSL_CTX_set_min_proto_version(ssl, o->min_version == 13 ? TLS1_3_VERSION : TLS1_2_VERSION);
    if (SSL_CTX_set_cipher_list(ssl, o->ciphers ? o->ciphers : DEFAULT_CIPHERS) != 1) {
        snprintf(err, errlen, "--tls-ciphers: no usable cipher in '%s'", o->ciphers ? o->ciphers : "");
        goto fail;
    }
    if (o->ciphersuites && SSL_CTX_set_ciphersuites(ssl, o->ciphersuites) != 1) {
        snprintf(err, errlen, "--tls-ciphersuites: no usable suite in '%s'", o->ciphersuites);
        goto fail;
    }
    /* No renegotiation (a client could make us do handshakes at will), the
     * server's order of ciphers, buffers released while a connection idles
     * (OpenSSL keeps ~34 KB per connection otherwise). */
    SSL_CTX_set_options(ssl, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE |
                                 SSL_OP_NO_COMPRESSION);
    SSL_CTX_set_mode(ssl, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ENABLE_PARTIAL_WRITE);
    SSL_CTX_set_session_cache_mode(ssl, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_num_tickets(ssl, 1);
    SSL_CTX_set_alpn_select_cb(ssl, alpn_cb, NULL);
    SSL_CTX_set_tlsext_ticket_key_evp_cb(ssl, ticket_cb);
    check_dates(ssl, o->cert_file, warn, warnlen);
    ws_tls_ctx_t *c = wrap(ssl);
    if (o->ticket_key)
        c->key = *o->ticket_key;
    else
        ws_tls_ticket_key_random(&c->key);
    return c;
fail:
    ERR_clear_error();
    SSL_CTX_free(ssl);
    return NULL;
}

ws_tls_ctx_t *ws_tls_client_ctx(char *err, size_t errlen)
{
    char why[256];
    ERR_clear_error();
    SSL_CTX *ssl = SSL_CTX_new(TLS_client_method());
    if (!ssl) {
        snprintf(err, errlen, "TLS: %s", ssl_reason(why, sizeof why));
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ssl, TLS1_2_VERSION);
    SSL_CTX_set_mode(ssl, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ENABLE_PARTIAL_WRITE);
    SSL_CTX_set_options(ssl, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
    if (SSL_CTX_set_default_verify_paths(ssl) != 1)
        ERR_clear_error(); /* no store: every verified connection fails, with its reason */
    static const unsigned char h11[] = "\x08http/1.1";
    SSL_CTX_set_alpn_protos(ssl, h11, sizeof h11 - 1);
    return wrap(ssl);
}

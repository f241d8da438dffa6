#include "error.h"

#include <uv.h>

const char *ws_err_name(int err)
{
    switch (err) {
    case WS_OK: return "WS_OK";
    case WS_EAGAIN: return "WS_EAGAIN";
    case WS_EPROTO: return "WS_EPROTO";
    case WS_EUNMASKED: return "WS_EUNMASKED";
    case WS_ERSV: return "WS_ERSV";
    case WS_EOPCODE: return "WS_EOPCODE";
    case WS_ECTRLLEN: return "WS_ECTRLLEN";
    case WS_ECTRLFRAG: return "WS_ECTRLFRAG";
    case WS_ECONT: return "WS_ECONT";
    case WS_EINTERLEAVE: return "WS_EINTERLEAVE";
    case WS_ECLOSECODE: return "WS_ECLOSECODE";
    case WS_ECLOSELEN: return "WS_ECLOSELEN";
    case WS_ELEN64: return "WS_ELEN64";
    case WS_EUTF8: return "WS_EUTF8";
    case WS_ETOOBIG: return "WS_ETOOBIG";
    case WS_EHDRTOOBIG: return "WS_EHDRTOOBIG";
    case WS_EBODYTOOBIG: return "WS_EBODYTOOBIG";
    case WS_EURITOOBIG: return "WS_EURITOOBIG";
    case WS_EFULL: return "WS_EFULL";
    case WS_EINFLATE: return "WS_EINFLATE";
    case WS_EHTTP: return "WS_EHTTP";
    case WS_EINVAL: return "WS_EINVAL";
    case WS_ENOMEM: return "WS_ENOMEM";
    }
    if (err < 0 && err > -4096)
        return uv_err_name(err);
    return "WS_EUNKNOWN";
}

const char *ws_strerror(int err)
{
    switch (err) {
    case WS_OK: return "success";
    case WS_EAGAIN: return "need more input";
    case WS_EPROTO: return "protocol error";
    case WS_EUNMASKED: return "client frame is not masked";
    case WS_ERSV: return "reserved bit set without a negotiated extension";
    case WS_EOPCODE: return "reserved opcode";
    case WS_ECTRLLEN: return "control frame payload over 125 bytes";
    case WS_ECTRLFRAG: return "fragmented control frame";
    case WS_ECONT: return "continuation frame without a message in progress";
    case WS_EINTERLEAVE: return "new data frame inside a fragmented message";
    case WS_ECLOSECODE: return "invalid close status code";
    case WS_ECLOSELEN: return "close frame payload of one byte";
    case WS_ELEN64: return "64-bit payload length with the top bit set";
    case WS_EUTF8: return "invalid UTF-8";
    case WS_ETOOBIG: return "message too big";
    case WS_EHDRTOOBIG: return "request header fields too large";
    case WS_EBODYTOOBIG: return "request body too large";
    case WS_EURITOOBIG: return "request target too long";
    case WS_EFULL: return "send buffer full";
    case WS_EINFLATE: return "compressed data is invalid";
    case WS_EHTTP: return "malformed HTTP request";
    case WS_EINVAL: return "invalid argument";
    case WS_ENOMEM: return "out of memory";
    }
    if (err < 0 && err > -4096)
        return uv_strerror(err);
    return "unknown error";
}

int ws_err_close_code(int err)
{
    if (err == WS_EUTF8 || err == WS_EINFLATE)
        return WS_CLOSE_INVALID_DATA;
    if (err == WS_ETOOBIG)
        return WS_CLOSE_TOO_BIG;
    if (err == WS_ENOMEM) /* a server limit (e.g. the zlib memory cap): come back later */
        return WS_CLOSE_TRY_AGAIN;
    if (err <= WS_EPROTO && err > WS_ETOOBIG)
        return WS_CLOSE_PROTOCOL;
    return WS_CLOSE_INTERNAL;
}

int ws_close_code_valid(unsigned code)
{
    if (code >= 3000 && code <= 4999)
        return 1;
    if (code >= 1000 && code <= 1003)
        return 1;
    return code >= 1007 && code <= 1014;
}

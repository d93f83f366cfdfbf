/*
 * ringsocket1/ringsocket.h: RingSocket 1 source compatibility for ringsocket.
 *
 * An app written for the original C RingSocket (its RS_APP(RS_INIT.., RS_OPEN..,
 * RS_READ_.., RS_CLOSE.., RS_TIMER..) form, read-parameter macros, rs_get_*, rs_w_*,
 * rs_to_*, rs_close*, RS_LOG) compiles unchanged with `-I` to this directory and builds
 * a ringsocket ABI v2 plugin. The macros here generate the plugin's callbacks and its
 * descriptor on top of ../ringsocket.h; docs/apps.md lists every difference from
 * RingSocket 1. In short:
 *
 *  - RS_CB_FATAL / RS_TIMER_FATAL never stop the server: they are logged, and a fatal
 *    open or read closes that client with 1011.
 *  - After a 4900/4901/4902 close, the close callback runs when the client is gone
 *    (not at once), and exactly once; an rs_close() also leads to a close callback.
 *  - RS_INIT's app data is zeroed heap memory (not the app thread's stack).
 *  - The RS_TIMER callback first runs `min` after start (RingSocket 1: at the first idle
 *    moment); any inbound message resets its interval to `min`, as before.
 *  - RS_NET_HEAP / RS_NTOH_HEAP allocate elem_c * sizeof(T) bytes (RingSocket 1: elem_c).
 *  - rs_to_every_except_single excludes its client (RingSocket 1 sent to everyone).
 *  - C only: the C++ form of RS_APP is not supported. Up to 15 read parameters and
 *    64 RS_READ_SWITCH cases.
 *
 * SPDX-License-Identifier: MIT (the API it reproduces is RingSocket's, (c) MetaWord Inc
 * and William Budd, MIT).
 */
#ifndef RINGSOCKET1_COMPAT_H
#define RINGSOCKET1_COMPAT_H

#define RS_RINGSOCKET1_COMPAT 1
#include "../ringsocket.h"

/* What RingSocket 1's ringsocket.h brought in, which its apps rely on. */
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

/* ---- Utility macros (ringsocket_api.h). ---- */

#define RS_ELEM_C(arr) (sizeof(arr) / sizeof((arr)[0]))
#define RS_MIN(a, b) ((a) < (b) ? (a) : (b))
#define RS_MAX(a, b) ((a) > (b) ? (a) : (b))
#define RS_BOUNDS(min, x, max) RS_MIN(RS_MAX((min), (x)), (max))
#define RS_CONST_STRLEN(const_str) (sizeof(const_str) - 1)
#define RS_STRINGIFIED(str) #str
#define RS_STRINGIFY(str) RS_STRINGIFIED(str)
#define RS_IS_LITTLE_ENDIAN (__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__)
#define RS_NTOH16(x) (RS_IS_LITTLE_ENDIAN ? __builtin_bswap16((uint16_t)(x)) : (uint16_t)(x))
#define RS_NTOH32(x) (RS_IS_LITTLE_ENDIAN ? __builtin_bswap32((uint32_t)(x)) : (uint32_t)(x))
#define RS_NTOH64(x) (RS_IS_LITTLE_ENDIAN ? __builtin_bswap64((uint64_t)(x)) : (uint64_t)(x))
#define RS_HTON16(x) RS_NTOH16(x)
#define RS_HTON32(x) RS_NTOH32(x)
#define RS_HTON64(x) RS_NTOH64(x)
#define RS_R_NTOH16(ptr) rs1_read_be((ptr), 2)
#define RS_R_NTOH32(ptr) rs1_read_be((ptr), 4)
#define RS_R_NTOH64(ptr) rs1_read_be((ptr), 8)
#define RS_CALLOC(pointer, elem_c) \
    ((pointer) = calloc((elem_c), sizeof(*(pointer))))
#define RS_FREE(pointer) do { free(pointer); (pointer) = NULL; } while (0)

/* ---- Types. ---- */

/* RS_BIN and RS_UTF8 are ../ringsocket.h's (0 and 1), usable wherever this enum is. */
enum rs_data_kind { RS1_DATA_KIND_BIN = 0, RS1_DATA_KIND_UTF8 = 1 };

/* What non-timer callbacks return. RS_CB_FATAL is logged and closes the client with
 * 1011 (from open or read); the server keeps running. */
typedef enum { RS_CB_FATAL, RS_CB_OK } rs_cb_ret;

/* What the RS_TIMER callback returns: RS_TIMER_MIN..RS_TIMER_NEVER come from
 * ../ringsocket.h with RingSocket 1's values; RS_TIMER_FATAL is logged. */
#define RS_TIMER_FATAL 0
typedef int rs_timer_ret;

/* The close codes the read macros send. */
enum rs_app_ws_close {
    RS_APP_WS_CLOSE_WRONG_SIZE = 4900,
    RS_APP_WS_CLOSE_WRONG_DATA_TYPE = 4901,
    RS_APP_WS_CLOSE_UNKNOWN_CASE = 4902
};

/* ---- Logging: RS_LOG(lvl[, fmt, ...]) with syslog levels, through the server. ---- */

/* The handle of the callback running on this thread (set by the generated callbacks,
 * shared by every translation unit of the plugin), for RS_LOG and friends. */
__attribute__((weak, visibility("hidden"))) _Thread_local rs_t *rs1_current_rs;
__attribute__((weak, visibility("hidden"))) _Thread_local char rs1_thread_id[40];

static inline void rs_set_thread_id(char const *thread_id) {
    snprintf(rs1_thread_id, sizeof(rs1_thread_id), "%s: ", thread_id);
}

/* The ringsocket log level of a syslog level. */
static inline int rs1_level(int syslog_level) {
    return syslog_level <= LOG_ERR ? RS_LOG_ERROR
         : syslog_level == LOG_WARNING ? RS_LOG_WARN
         : syslog_level <= LOG_INFO ? RS_LOG_INFO
         : RS_LOG_DEBUG;
}

__attribute__((format(printf, 4, 5))) static inline void rs1_log(int lvl, char const *func,
                                                                 int line, char const *fmt,
                                                                 ...) {
    rs_t *rs = rs1_current_rs;
    int level = rs1_level(lvl);
    if (rs && level > RS_HEADER(rs)->log_level) {
        return;
    }
    char msg[2048];
    int n = snprintf(msg, sizeof(msg), "%s%s():%d: ", rs1_thread_id, func, line);
    if (n < 0) {
        return;
    }
    va_list args;
    va_start(args, fmt);
    int m = vsnprintf(msg + n, sizeof(msg) - (size_t)n, fmt, args);
    va_end(args);
    size_t len = m < 0 ? (size_t)n : RS_MIN((size_t)n + (size_t)m, sizeof(msg) - 1);
    if (rs) {
        rs_log(rs, level, msg, len);
    } else {
        fprintf(stderr, "%.*s\n", (int)len, msg);
    }
}

#define RS1_LOG_1(lvl) rs1_log((lvl), __func__, __LINE__, "%s", "")
#define RS1_LOG_N(lvl, ...) rs1_log((lvl), __func__, __LINE__, __VA_ARGS__)
#define RS_LOG(...) RS1_CAT(RS1_LOG_, RS1_ONE_OR_N(__VA_ARGS__))(__VA_ARGS__)
/* RS_LOG, with ": strerror(errno)" appended. */
__attribute__((format(printf, 5, 6))) static inline void rs1_log_errno(int lvl, char const *func,
                                                                      int line, int err,
                                                                      char const *fmt, ...) {
    char msg[1024];
    va_list args;
    va_start(args, fmt);
    int n = vsnprintf(msg, sizeof(msg), fmt, args);
    va_end(args);
    rs1_log(lvl, func, line, "%s%s%s", n > 0 ? msg : "", n > 0 ? ": " : "", strerror(err));
}
#define RS1_LOG_ERRNO_1(lvl) rs1_log_errno((lvl), __func__, __LINE__, errno, "%s", "")
#define RS1_LOG_ERRNO_N(lvl, ...) rs1_log_errno((lvl), __func__, __LINE__, errno, __VA_ARGS__)
#define RS_LOG_ERRNO(...) RS1_CAT(RS1_LOG_ERRNO_, RS1_ONE_OR_N(__VA_ARGS__))(__VA_ARGS__)

/* ---- Getters (allowed where RingSocket 1 allowed them; 0 / NULL elsewhere). ---- */

static inline uint64_t rs_get_client_id(rs_t const *rs) {
    return ((struct rs_header const *)rs)->cur_client;
}
static inline uint64_t rs_get_endpoint_id(rs_t const *rs) {
    return ((struct rs_header const *)rs)->cur_endpoint_id;
}
static inline enum rs_data_kind rs_get_read_data_kind(rs_t const *rs) {
    return (enum rs_data_kind)((struct rs_header const *)rs)->cur_kind;
}
static inline void *rs_get_app_data(rs_t const *rs) {
    return ((struct rs_header const *)rs)->app_state;
}
/* The current client's address (as getpeername() gave it): 0, or -1 with errno. */
static inline int rs_get_client_addr(rs_t const *rs, struct sockaddr_storage *addr) {
    struct rs_client_info info;
    rs_t *mut = (rs_t *)(uintptr_t)rs;
    if (RS_API(mut)->client_info(mut, rs_get_client_id(rs), &info) != RS_OK ||
        !info.peer.family) {
        errno = ENOTCONN;
        return -1;
    }
    memset(addr, 0, sizeof(*addr));
    if (info.peer.family == RS_ADDR_IPV4) {
        struct sockaddr_in *in = (struct sockaddr_in *)addr;
        in->sin_family = AF_INET;
        in->sin_port = htons(info.peer.port);
        memcpy(&in->sin_addr, info.peer.ip, 4);
    } else {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)addr;
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons(info.peer.port);
        memcpy(&in6->sin6_addr, info.peer.ip, 16);
    }
    return 0;
}

/* ---- Closing. ---- */

/* Codes outside 4000-4899 are logged and become 4899, as in RingSocket 1. */
static inline void rs_close(rs_t *rs, uint64_t client_id, unsigned code) {
    if (code < 4000 || code >= 4900) {
        rs1_log(LOG_ERR, __func__, __LINE__,
                "rs_close() given close code %u outside 4000-4899; using 4899", code);
        code = 4899;
    }
    RS_API(rs)->close(rs, client_id, (uint16_t)code, "", 0);
}
static inline void rs_close_cur(rs_t *rs, unsigned code) {
    rs_close(rs, rs_get_client_id(rs), code);
}

/* ---- Internals of RS_APP. ---- */

static inline uint64_t rs1_read_be(void const *p, size_t size) {
    uint8_t const *b = (uint8_t const *)p;
    uint64_t v = 0;
    for (size_t i = 0; i < size; i++) {
        v = (v << 8) | b[i];
    }
    return v;
}

/* malloc, with at least one byte (so that an empty array is not NULL). */
static inline void *rs1_malloc(size_t bytes) {
    return malloc(bytes > 0 ? bytes : 1);
}

static inline int rs1_in_range(size_t n, size_t min, size_t max) {
    return n >= min && n <= max;
}

/* A read macro's check failed: close the client with `code`; the read is done. */
static inline int rs1_abort(rs_t *rs, unsigned code) {
    RS_API(rs)->close(rs, rs_get_client_id(rs), (uint16_t)code, "", 0);
    return 0;
}

/* The ABI status of a callback's rs_cb_ret. */
static inline int rs1_status(char const *callback, rs_cb_ret ret) {
    if (ret == RS_CB_OK) {
        return 0;
    }
    rs1_log(LOG_ERR, callback, 0, "returned RS_CB_FATAL: closing the client with 1011");
    return 1;
}

#define RS1_CAT(a, b) RS1_CAT_(a, b)
#define RS1_CAT_(a, b) a##b
#define RS1_NARGS(...) RS1_NARGS_(__VA_ARGS__, 64, 63, 62, 61, 60, 59, 58, 57, 56, 55, 54, 53, 52, 51, 50, 49, 48, 47, 46, 45, 44, 43, 42, 41, 40, 39, 38, 37, 36, 35, 34, 33, 32, 31, 30, 29, 28, 27, 26, 25, 24, 23, 22, 21, 20, 19, 18, 17, 16, 15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0)
#define RS1_NARGS_(_1, _2, _3, _4, _5, _6, _7, _8, _9, _10, _11, _12, _13, _14, _15, _16, _17, _18, _19, _20, _21, _22, _23, _24, _25, _26, _27, _28, _29, _30, _31, _32, _33, _34, _35, _36, _37, _38, _39, _40, _41, _42, _43, _44, _45, _46, _47, _48, _49, _50, _51, _52, _53, _54, _55, _56, _57, _58, _59, _60, _61, _62, _63, _64, n, ...) n
#define RS1_ONE_OR_N(...) RS1_NARGS_(__VA_ARGS__, N, N, N, N, N, N, N, N, N, N, N, N, N, N, N, N, N, N, N, N, N, N, N, N, N, N, N, N, N, N, N, N, N, N, N, N, N, N, N, N, N, N, N, N, N, N, N, N, N, N, N, N, N, N, N, N, N, N, N, N, N, N, N, 1, 0)
#define RS1_EACH(m, ...) RS1_CAT(RS1_EACH_, RS1_NARGS(__VA_ARGS__))(m, __VA_ARGS__)
#define RS1_EACH_1(m, x) m(x)
#define RS1_EACH_2(m, x, ...) m(x) RS1_EACH_1(m, __VA_ARGS__)
#define RS1_EACH_3(m, x, ...) m(x) RS1_EACH_2(m, __VA_ARGS__)
#define RS1_EACH_4(m, x, ...) m(x) RS1_EACH_3(m, __VA_ARGS__)
#define RS1_EACH_5(m, x, ...) m(x) RS1_EACH_4(m, __VA_ARGS__)
#define RS1_EACH_6(m, x, ...) m(x) RS1_EACH_5(m, __VA_ARGS__)
#define RS1_EACH_7(m, x, ...) m(x) RS1_EACH_6(m, __VA_ARGS__)
#define RS1_EACH_8(m, x, ...) m(x) RS1_EACH_7(m, __VA_ARGS__)
#define RS1_EACH_9(m, x, ...) m(x) RS1_EACH_8(m, __VA_ARGS__)
#define RS1_EACH_10(m, x, ...) m(x) RS1_EACH_9(m, __VA_ARGS__)
#define RS1_EACH_11(m, x, ...) m(x) RS1_EACH_10(m, __VA_ARGS__)
#define RS1_EACH_12(m, x, ...) m(x) RS1_EACH_11(m, __VA_ARGS__)
#define RS1_EACH_13(m, x, ...) m(x) RS1_EACH_12(m, __VA_ARGS__)
#define RS1_EACH_14(m, x, ...) m(x) RS1_EACH_13(m, __VA_ARGS__)
#define RS1_EACH_15(m, x, ...) m(x) RS1_EACH_14(m, __VA_ARGS__)
#define RS1_EACH_16(m, x, ...) m(x) RS1_EACH_15(m, __VA_ARGS__)
#define RS1_EACH_17(m, x, ...) m(x) RS1_EACH_16(m, __VA_ARGS__)
#define RS1_EACH_18(m, x, ...) m(x) RS1_EACH_17(m, __VA_ARGS__)
#define RS1_EACH_19(m, x, ...) m(x) RS1_EACH_18(m, __VA_ARGS__)
#define RS1_EACH_20(m, x, ...) m(x) RS1_EACH_19(m, __VA_ARGS__)
#define RS1_EACH_21(m, x, ...) m(x) RS1_EACH_20(m, __VA_ARGS__)
#define RS1_EACH_22(m, x, ...) m(x) RS1_EACH_21(m, __VA_ARGS__)
#define RS1_EACH_23(m, x, ...) m(x) RS1_EACH_22(m, __VA_ARGS__)
#define RS1_EACH_24(m, x, ...) m(x) RS1_EACH_23(m, __VA_ARGS__)
#define RS1_EACH_25(m, x, ...) m(x) RS1_EACH_24(m, __VA_ARGS__)
#define RS1_EACH_26(m, x, ...) m(x) RS1_EACH_25(m, __VA_ARGS__)
#define RS1_EACH_27(m, x, ...) m(x) RS1_EACH_26(m, __VA_ARGS__)
#define RS1_EACH_28(m, x, ...) m(x) RS1_EACH_27(m, __VA_ARGS__)
#define RS1_EACH_29(m, x, ...) m(x) RS1_EACH_28(m, __VA_ARGS__)
#define RS1_EACH_30(m, x, ...) m(x) RS1_EACH_29(m, __VA_ARGS__)
#define RS1_EACH_31(m, x, ...) m(x) RS1_EACH_30(m, __VA_ARGS__)
#define RS1_EACH_32(m, x, ...) m(x) RS1_EACH_31(m, __VA_ARGS__)
#define RS1_EACH_33(m, x, ...) m(x) RS1_EACH_32(m, __VA_ARGS__)
#define RS1_EACH_34(m, x, ...) m(x) RS1_EACH_33(m, __VA_ARGS__)
#define RS1_EACH_35(m, x, ...) m(x) RS1_EACH_34(m, __VA_ARGS__)
#define RS1_EACH_36(m, x, ...) m(x) RS1_EACH_35(m, __VA_ARGS__)
#define RS1_EACH_37(m, x, ...) m(x) RS1_EACH_36(m, __VA_ARGS__)
#define RS1_EACH_38(m, x, ...) m(x) RS1_EACH_37(m, __VA_ARGS__)
#define RS1_EACH_39(m, x, ...) m(x) RS1_EACH_38(m, __VA_ARGS__)
#define RS1_EACH_40(m, x, ...) m(x) RS1_EACH_39(m, __VA_ARGS__)
#define RS1_EACH_41(m, x, ...) m(x) RS1_EACH_40(m, __VA_ARGS__)
#define RS1_EACH_42(m, x, ...) m(x) RS1_EACH_41(m, __VA_ARGS__)
#define RS1_EACH_43(m, x, ...) m(x) RS1_EACH_42(m, __VA_ARGS__)
#define RS1_EACH_44(m, x, ...) m(x) RS1_EACH_43(m, __VA_ARGS__)
#define RS1_EACH_45(m, x, ...) m(x) RS1_EACH_44(m, __VA_ARGS__)
#define RS1_EACH_46(m, x, ...) m(x) RS1_EACH_45(m, __VA_ARGS__)
#define RS1_EACH_47(m, x, ...) m(x) RS1_EACH_46(m, __VA_ARGS__)
#define RS1_EACH_48(m, x, ...) m(x) RS1_EACH_47(m, __VA_ARGS__)
#define RS1_EACH_49(m, x, ...) m(x) RS1_EACH_48(m, __VA_ARGS__)
#define RS1_EACH_50(m, x, ...) m(x) RS1_EACH_49(m, __VA_ARGS__)
#define RS1_EACH_51(m, x, ...) m(x) RS1_EACH_50(m, __VA_ARGS__)
#define RS1_EACH_52(m, x, ...) m(x) RS1_EACH_51(m, __VA_ARGS__)
#define RS1_EACH_53(m, x, ...) m(x) RS1_EACH_52(m, __VA_ARGS__)
#define RS1_EACH_54(m, x, ...) m(x) RS1_EACH_53(m, __VA_ARGS__)
#define RS1_EACH_55(m, x, ...) m(x) RS1_EACH_54(m, __VA_ARGS__)
#define RS1_EACH_56(m, x, ...) m(x) RS1_EACH_55(m, __VA_ARGS__)
#define RS1_EACH_57(m, x, ...) m(x) RS1_EACH_56(m, __VA_ARGS__)
#define RS1_EACH_58(m, x, ...) m(x) RS1_EACH_57(m, __VA_ARGS__)
#define RS1_EACH_59(m, x, ...) m(x) RS1_EACH_58(m, __VA_ARGS__)
#define RS1_EACH_60(m, x, ...) m(x) RS1_EACH_59(m, __VA_ARGS__)
#define RS1_EACH_61(m, x, ...) m(x) RS1_EACH_60(m, __VA_ARGS__)
#define RS1_EACH_62(m, x, ...) m(x) RS1_EACH_61(m, __VA_ARGS__)
#define RS1_EACH_63(m, x, ...) m(x) RS1_EACH_62(m, __VA_ARGS__)
#define RS1_EACH_64(m, x, ...) m(x) RS1_EACH_63(m, __VA_ARGS__)

/* The read callback's locals: rs, rs1_kind, rs1_payload, rs1_size, rs1_i. */
#define RS1_NEED(n) \
    if ((size_t)(n) > rs1_size - rs1_i) return rs1_abort(rs, RS_APP_WS_CLOSE_WRONG_SIZE)
#define RS1_EXACT \
    if (rs1_i != rs1_size) return rs1_abort(rs, RS_APP_WS_CLOSE_WRONG_SIZE)
/* The rest of the message as elem_c elements of `type`, min_c <= elem_c <= max_c. */
#define RS1_RANGE(type, min_c, max_c) \
    size_t elem_c = rs1_size - rs1_i; \
    if (elem_c % sizeof(type)) return rs1_abort(rs, RS_APP_WS_CLOSE_WRONG_SIZE); \
    elem_c /= sizeof(type); \
    if (!rs1_in_range(elem_c, (size_t)(min_c), (size_t)(max_c))) \
        return rs1_abort(rs, RS_APP_WS_CLOSE_WRONG_SIZE)
#define RS1_COPY(dst, n, type) \
    memcpy((dst), rs1_payload + rs1_i, (n) * sizeof(type)); rs1_i += (n) * sizeof(type)
#define RS1_SWAP(dst, n, type) \
    for (size_t rs1_j = 0; rs1_j < (size_t)(n); rs1_j++) { \
        (dst)[rs1_j] = (type)rs1_read_be(rs1_payload + rs1_i, sizeof(type)); \
        rs1_i += sizeof(type); \
    }
#define RS1_HEAP_ALLOC(var, bytes) \
    var = rs1_malloc(bytes); \
    if (!var) { \
        rs1_log(LOG_ALERT, __func__, __LINE__, "cannot allocate %zu bytes", (size_t)(bytes)); \
        return 1; \
    }

/* Each read-parameter macro becomes (kind, args...): declaring v<k> and passing it. */
#define RS1_K_RS_NET(...) RS1_NET, __VA_ARGS__
#define RS1_K_RS_NTOH(...) RS1_NTOH, __VA_ARGS__
#define RS1_K_RS_NET_STA(...) RS1_NET_STA, __VA_ARGS__
#define RS1_K_RS_NET_VLA(...) RS1_NET_VLA, __VA_ARGS__
#define RS1_K_RS_NET_HEAP(...) RS1_NET_HEAP, __VA_ARGS__
#define RS1_K_RS_NTOH_STA(...) RS1_NTOH_STA, __VA_ARGS__
#define RS1_K_RS_NTOH_VLA(...) RS1_NTOH_VLA, __VA_ARGS__
#define RS1_K_RS_NTOH_HEAP(...) RS1_NTOH_HEAP, __VA_ARGS__
#define RS1_K_RS_STR(...) RS1_STR, __VA_ARGS__
#define RS1_K_RS_STR_STA(...) RS1_STR_STA, __VA_ARGS__
#define RS1_K_RS_STR_VLA(...) RS1_STR_VLA, __VA_ARGS__
#define RS1_K_RS_STR_HEAP(...) RS1_STR_HEAP, __VA_ARGS__

#define RS1_PARAM(k, p) RS1_PARAM_(k, RS1_K_##p)
#define RS1_PARAM_(k, ...) RS1_PARAM__(k, __VA_ARGS__)
#define RS1_PARAM__(k, kind, ...) kind(k, __VA_ARGS__)
#define RS1_ARG(k, p) RS1_ARG_(k, RS1_K_##p)
#define RS1_ARG_(k, ...) RS1_ARG__(k, __VA_ARGS__)
#define RS1_ARG__(k, kind, ...) RS1_CAT(kind, _ARG)(k, __VA_ARGS__)

/* RS_NET(T): one T. RS_NET(T, n): T[n]. RS_NET(T, min, max) (last): T[elem_c], on the
 * stack (room for max). RS_NTOH: the same, each element from network byte order. */
#define RS1_NET(k, ...) RS1_CAT(RS1_NET_, RS1_NARGS(__VA_ARGS__))(k, __VA_ARGS__)
#define RS1_NET_1(k, type) \
    RS1_NEED(sizeof(type)); type v##k; RS1_COPY(&v##k, 1, type);
#define RS1_NET_2(k, type, n) \
    RS1_NEED((n) * sizeof(type)); type v##k[n]; RS1_COPY(v##k, (n), type);
#define RS1_NET_3(k, type, min_c, max_c) \
    RS1_RANGE(type, min_c, max_c); type v##k[max_c]; RS1_COPY(v##k, elem_c, type);
#define RS1_NET_ARG(k, ...) RS1_CAT(RS1_NET_ARG_, RS1_NARGS(__VA_ARGS__))(k)
#define RS1_NET_ARG_1(k) , v##k
#define RS1_NET_ARG_2(k) , v##k
#define RS1_NET_ARG_3(k) , v##k, elem_c
#define RS1_NTOH(k, ...) RS1_CAT(RS1_NTOH_, RS1_NARGS(__VA_ARGS__))(k, __VA_ARGS__)
#define RS1_NTOH_1(k, type) \
    RS1_NEED(sizeof(type)); type v##k; RS1_SWAP(&v##k, 1, type)
#define RS1_NTOH_2(k, type, n) \
    RS1_NEED((n) * sizeof(type)); type v##k[n]; RS1_SWAP(v##k, (n), type)
#define RS1_NTOH_3(k, type, min_c, max_c) \
    RS1_RANGE(type, min_c, max_c); type v##k[max_c]; RS1_SWAP(v##k, elem_c, type)
#define RS1_NTOH_ARG RS1_NET_ARG

/* _STA: thread-local static storage for max elements; _VLA: a variable-length array;
 * _HEAP: malloc(elem_c * sizeof(T)), which the callback must free. */
#define RS1_NET_STA(k, type, min_c, max_c) \
    RS1_RANGE(type, min_c, max_c); static _Thread_local type v##k[max_c]; \
    RS1_COPY(v##k, elem_c, type);
#define RS1_NET_VLA(k, type, min_c, max_c) \
    RS1_RANGE(type, min_c, max_c); type v##k[elem_c ? elem_c : 1]; RS1_COPY(v##k, elem_c, type);
#define RS1_NET_HEAP(k, type, min_c, max_c) \
    RS1_RANGE(type, min_c, max_c); type *v##k; RS1_HEAP_ALLOC(v##k, elem_c * sizeof(type)) \
    RS1_COPY(v##k, elem_c, type);
#define RS1_NTOH_STA(k, type, min_c, max_c) \
    RS1_RANGE(type, min_c, max_c); static _Thread_local type v##k[max_c]; \
    RS1_SWAP(v##k, elem_c, type)
#define RS1_NTOH_VLA(k, type, min_c, max_c) \
    RS1_RANGE(type, min_c, max_c); type v##k[elem_c ? elem_c : 1]; RS1_SWAP(v##k, elem_c, type)
#define RS1_NTOH_HEAP(k, type, min_c, max_c) \
    RS1_RANGE(type, min_c, max_c); type *v##k; RS1_HEAP_ALLOC(v##k, elem_c * sizeof(type)) \
    RS1_SWAP(v##k, elem_c, type)
#define RS1_ELEMS_ARG(k, ...) , v##k, elem_c
#define RS1_NET_STA_ARG RS1_ELEMS_ARG
#define RS1_NET_VLA_ARG RS1_ELEMS_ARG
#define RS1_NET_HEAP_ARG RS1_ELEMS_ARG
#define RS1_NTOH_STA_ARG RS1_ELEMS_ARG
#define RS1_NTOH_VLA_ARG RS1_ELEMS_ARG
#define RS1_NTOH_HEAP_ARG RS1_ELEMS_ARG

/* RS_STR(min, max) (last): a NUL-terminated copy of the rest, `char *str, size_t len`. */
#define RS1_STR(k, min_c, max_c) \
    RS1_RANGE(char, min_c, max_c); char v##k[(max_c) + 1]; RS1_COPY(v##k, elem_c, char); \
    v##k[elem_c] = '\0';
#define RS1_STR_STA(k, min_c, max_c) \
    RS1_RANGE(char, min_c, max_c); static _Thread_local char v##k[(max_c) + 1]; \
    RS1_COPY(v##k, elem_c, char); v##k[elem_c] = '\0';
#define RS1_STR_VLA(k, min_c, max_c) \
    RS1_RANGE(char, min_c, max_c); char v##k[elem_c + 1]; RS1_COPY(v##k, elem_c, char); \
    v##k[elem_c] = '\0';
#define RS1_STR_HEAP(k, min_c, max_c) \
    RS1_RANGE(char, min_c, max_c); char *v##k; RS1_HEAP_ALLOC(v##k, elem_c + 1) \
    RS1_COPY(v##k, elem_c, char); v##k[elem_c] = '\0';
#define RS1_STR_ARG RS1_ELEMS_ARG
#define RS1_STR_STA_ARG RS1_ELEMS_ARG
#define RS1_STR_VLA_ARG RS1_ELEMS_ARG
#define RS1_STR_HEAP_ARG RS1_ELEMS_ARG

/* RS1_CALL(cb, params...): read each parameter, check the message is used up exactly,
 * call cb(rs, v1, v2, ... [, elem_c]). */
#define RS1_CALL(...) RS1_CAT(RS1_CALL_, RS1_NARGS(__VA_ARGS__))(__VA_ARGS__)
#define RS1_CALL_1(cb) \
     RS1_EXACT; return rs1_status(#cb, cb(rs ));
#define RS1_CALL_2(cb, p1) \
    RS1_PARAM(1, p1) RS1_EXACT; return rs1_status(#cb, cb(rs RS1_ARG(1, p1)));
#define RS1_CALL_3(cb, p1, p2) \
    RS1_PARAM(1, p1) RS1_PARAM(2, p2) RS1_EXACT; return rs1_status(#cb, cb(rs RS1_ARG(1, p1) RS1_ARG(2, p2)));
#define RS1_CALL_4(cb, p1, p2, p3) \
    RS1_PARAM(1, p1) RS1_PARAM(2, p2) RS1_PARAM(3, p3) RS1_EXACT; return rs1_status(#cb, cb(rs RS1_ARG(1, p1) RS1_ARG(2, p2) RS1_ARG(3, p3)));
#define RS1_CALL_5(cb, p1, p2, p3, p4) \
    RS1_PARAM(1, p1) RS1_PARAM(2, p2) RS1_PARAM(3, p3) RS1_PARAM(4, p4) RS1_EXACT; return rs1_status(#cb, cb(rs RS1_ARG(1, p1) RS1_ARG(2, p2) RS1_ARG(3, p3) RS1_ARG(4, p4)));
#define RS1_CALL_6(cb, p1, p2, p3, p4, p5) \
    RS1_PARAM(1, p1) RS1_PARAM(2, p2) RS1_PARAM(3, p3) RS1_PARAM(4, p4) RS1_PARAM(5, p5) RS1_EXACT; return rs1_status(#cb, cb(rs RS1_ARG(1, p1) RS1_ARG(2, p2) RS1_ARG(3, p3) RS1_ARG(4, p4) RS1_ARG(5, p5)));
#define RS1_CALL_7(cb, p1, p2, p3, p4, p5, p6) \
    RS1_PARAM(1, p1) RS1_PARAM(2, p2) RS1_PARAM(3, p3) RS1_PARAM(4, p4) RS1_PARAM(5, p5) RS1_PARAM(6, p6) RS1_EXACT; return rs1_status(#cb, cb(rs RS1_ARG(1, p1) RS1_ARG(2, p2) RS1_ARG(3, p3) RS1_ARG(4, p4) RS1_ARG(5, p5) RS1_ARG(6, p6)));
#define RS1_CALL_8(cb, p1, p2, p3, p4, p5, p6, p7) \
    RS1_PARAM(1, p1) RS1_PARAM(2, p2) RS1_PARAM(3, p3) RS1_PARAM(4, p4) RS1_PARAM(5, p5) RS1_PARAM(6, p6) RS1_PARAM(7, p7) RS1_EXACT; return rs1_status(#cb, cb(rs RS1_ARG(1, p1) RS1_ARG(2, p2) RS1_ARG(3, p3) RS1_ARG(4, p4) RS1_ARG(5, p5) RS1_ARG(6, p6) RS1_ARG(7, p7)));
#define RS1_CALL_9(cb, p1, p2, p3, p4, p5, p6, p7, p8) \
    RS1_PARAM(1, p1) RS1_PARAM(2, p2) RS1_PARAM(3, p3) RS1_PARAM(4, p4) RS1_PARAM(5, p5) RS1_PARAM(6, p6) RS1_PARAM(7, p7) RS1_PARAM(8, p8) RS1_EXACT; return rs1_status(#cb, cb(rs RS1_ARG(1, p1) RS1_ARG(2, p2) RS1_ARG(3, p3) RS1_ARG(4, p4) RS1_ARG(5, p5) RS1_ARG(6, p6) RS1_ARG(7, p7) RS1_ARG(8, p8)));
#define RS1_CALL_10(cb, p1, p2, p3, p4, p5, p6, p7, p8, p9) \
    RS1_PARAM(1, p1) RS1_PARAM(2, p2) RS1_PARAM(3, p3) RS1_PARAM(4, p4) RS1_PARAM(5, p5) RS1_PARAM(6, p6) RS1_PARAM(7, p7) RS1_PARAM(8, p8) RS1_PARAM(9, p9) RS1_EXACT; return rs1_status(#cb, cb(rs RS1_ARG(1, p1) RS1_ARG(2, p2) RS1_ARG(3, p3) RS1_ARG(4, p4) RS1_ARG(5, p5) RS1_ARG(6, p6) RS1_ARG(7, p7) RS1_ARG(8, p8) RS1_ARG(9, p9)));
#define RS1_CALL_11(cb, p1, p2, p3, p4, p5, p6, p7, p8, p9, p10) \
    RS1_PARAM(1, p1) RS1_PARAM(2, p2) RS1_PARAM(3, p3) RS1_PARAM(4, p4) RS1_PARAM(5, p5) RS1_PARAM(6, p6) RS1_PARAM(7, p7) RS1_PARAM(8, p8) RS1_PARAM(9, p9) RS1_PARAM(10, p10) RS1_EXACT; return rs1_status(#cb, cb(rs RS1_ARG(1, p1) RS1_ARG(2, p2) RS1_ARG(3, p3) RS1_ARG(4, p4) RS1_ARG(5, p5) RS1_ARG(6, p6) RS1_ARG(7, p7) RS1_ARG(8, p8) RS1_ARG(9, p9) RS1_ARG(10, p10)));
#define RS1_CALL_12(cb, p1, p2, p3, p4, p5, p6, p7, p8, p9, p10, p11) \
    RS1_PARAM(1, p1) RS1_PARAM(2, p2) RS1_PARAM(3, p3) RS1_PARAM(4, p4) RS1_PARAM(5, p5) RS1_PARAM(6, p6) RS1_PARAM(7, p7) RS1_PARAM(8, p8) RS1_PARAM(9, p9) RS1_PARAM(10, p10) RS1_PARAM(11, p11) RS1_EXACT; return rs1_status(#cb, cb(rs RS1_ARG(1, p1) RS1_ARG(2, p2) RS1_ARG(3, p3) RS1_ARG(4, p4) RS1_ARG(5, p5) RS1_ARG(6, p6) RS1_ARG(7, p7) RS1_ARG(8, p8) RS1_ARG(9, p9) RS1_ARG(10, p10) RS1_ARG(11, p11)));
#define RS1_CALL_13(cb, p1, p2, p3, p4, p5, p6, p7, p8, p9, p10, p11, p12) \
    RS1_PARAM(1, p1) RS1_PARAM(2, p2) RS1_PARAM(3, p3) RS1_PARAM(4, p4) RS1_PARAM(5, p5) RS1_PARAM(6, p6) RS1_PARAM(7, p7) RS1_PARAM(8, p8) RS1_PARAM(9, p9) RS1_PARAM(10, p10) RS1_PARAM(11, p11) RS1_PARAM(12, p12) RS1_EXACT; return rs1_status(#cb, cb(rs RS1_ARG(1, p1) RS1_ARG(2, p2) RS1_ARG(3, p3) RS1_ARG(4, p4) RS1_ARG(5, p5) RS1_ARG(6, p6) RS1_ARG(7, p7) RS1_ARG(8, p8) RS1_ARG(9, p9) RS1_ARG(10, p10) RS1_ARG(11, p11) RS1_ARG(12, p12)));
#define RS1_CALL_14(cb, p1, p2, p3, p4, p5, p6, p7, p8, p9, p10, p11, p12, p13) \
    RS1_PARAM(1, p1) RS1_PARAM(2, p2) RS1_PARAM(3, p3) RS1_PARAM(4, p4) RS1_PARAM(5, p5) RS1_PARAM(6, p6) RS1_PARAM(7, p7) RS1_PARAM(8, p8) RS1_PARAM(9, p9) RS1_PARAM(10, p10) RS1_PARAM(11, p11) RS1_PARAM(12, p12) RS1_PARAM(13, p13) RS1_EXACT; return rs1_status(#cb, cb(rs RS1_ARG(1, p1) RS1_ARG(2, p2) RS1_ARG(3, p3) RS1_ARG(4, p4) RS1_ARG(5, p5) RS1_ARG(6, p6) RS1_ARG(7, p7) RS1_ARG(8, p8) RS1_ARG(9, p9) RS1_ARG(10, p10) RS1_ARG(11, p11) RS1_ARG(12, p12) RS1_ARG(13, p13)));
#define RS1_CALL_15(cb, p1, p2, p3, p4, p5, p6, p7, p8, p9, p10, p11, p12, p13, p14) \
    RS1_PARAM(1, p1) RS1_PARAM(2, p2) RS1_PARAM(3, p3) RS1_PARAM(4, p4) RS1_PARAM(5, p5) RS1_PARAM(6, p6) RS1_PARAM(7, p7) RS1_PARAM(8, p8) RS1_PARAM(9, p9) RS1_PARAM(10, p10) RS1_PARAM(11, p11) RS1_PARAM(12, p12) RS1_PARAM(13, p13) RS1_PARAM(14, p14) RS1_EXACT; return rs1_status(#cb, cb(rs RS1_ARG(1, p1) RS1_ARG(2, p2) RS1_ARG(3, p3) RS1_ARG(4, p4) RS1_ARG(5, p5) RS1_ARG(6, p6) RS1_ARG(7, p7) RS1_ARG(8, p8) RS1_ARG(9, p9) RS1_ARG(10, p10) RS1_ARG(11, p11) RS1_ARG(12, p12) RS1_ARG(13, p13) RS1_ARG(14, p14)));
#define RS1_CALL_16(cb, p1, p2, p3, p4, p5, p6, p7, p8, p9, p10, p11, p12, p13, p14, p15) \
    RS1_PARAM(1, p1) RS1_PARAM(2, p2) RS1_PARAM(3, p3) RS1_PARAM(4, p4) RS1_PARAM(5, p5) RS1_PARAM(6, p6) RS1_PARAM(7, p7) RS1_PARAM(8, p8) RS1_PARAM(9, p9) RS1_PARAM(10, p10) RS1_PARAM(11, p11) RS1_PARAM(12, p12) RS1_PARAM(13, p13) RS1_PARAM(14, p14) RS1_PARAM(15, p15) RS1_EXACT; return rs1_status(#cb, cb(rs RS1_ARG(1, p1) RS1_ARG(2, p2) RS1_ARG(3, p3) RS1_ARG(4, p4) RS1_ARG(5, p5) RS1_ARG(6, p6) RS1_ARG(7, p7) RS1_ARG(8, p8) RS1_ARG(9, p9) RS1_ARG(10, p10) RS1_ARG(11, p11) RS1_ARG(12, p12) RS1_ARG(13, p13) RS1_ARG(14, p14) RS1_ARG(15, p15)));

#define RS1_READ_RS_READ_ANY(...) { RS1_CALL(__VA_ARGS__) }
#define RS1_READ_RS_READ_BIN(...) { \
    if (rs1_kind == RS_UTF8) return rs1_abort(rs, RS_APP_WS_CLOSE_WRONG_DATA_TYPE); \
    RS1_CALL(__VA_ARGS__) }
#define RS1_READ_RS_READ_UTF8(...) { \
    if (rs1_kind == RS_BIN) return rs1_abort(rs, RS_APP_WS_CLOSE_WRONG_DATA_TYPE); \
    RS1_CALL(__VA_ARGS__) }
#define RS1_READ_RS_READ_SWITCH(...) \
    RS1_NEED(1); \
    switch (rs1_payload[rs1_i++]) { \
    RS1_EACH(RS1_CASE, __VA_ARGS__) \
    default: return rs1_abort(rs, RS_APP_WS_CLOSE_UNKNOWN_CASE); \
    }
#define RS1_CASE(c) RS1_CASE_##c
#define RS1_CASE_RS_CASE_BIN(value, ...) case (value): RS1_READ_RS_READ_BIN(__VA_ARGS__)
#define RS1_CASE_RS_CASE_UTF8(value, ...) case (value): RS1_READ_RS_READ_UTF8(__VA_ARGS__)
#define RS1_CASE_RS_CASE_ANY(value, ...) case (value): RS1_READ_RS_READ_ANY(__VA_ARGS__)

/* RS_INIT(cb) / RS_INIT(cb, app_data_byte_c) / RS_INIT_NONE. */
#define RS1_DEF_RS_INIT(...) RS1_CAT(RS1_DEF_INIT_, RS1_NARGS(__VA_ARGS__))(__VA_ARGS__)
#define RS1_DEF_INIT_1(cb) RS1_DEF_INIT_2(cb, 0)
#define RS1_DEF_INIT_2(cb, app_data_byte_c) \
    static int rs1_init(rs_t *rs, char const *settings, size_t len, void **state) { \
        (void)settings; (void)len; \
        rs1_current_rs = rs; \
        size_t size = (app_data_byte_c); \
        void *data = size ? calloc(1, size) : NULL; \
        if (size && !data) return 1; \
        *state = data; \
        RS_HEADER(rs)->app_state = data; \
        if (cb(rs) != RS_CB_OK) { \
            rs1_log(LOG_ERR, #cb, 0, "returned RS_CB_FATAL: the app does not start"); \
            free(data); *state = NULL; return 1; \
        } \
        return 0; \
    }
#define RS1_DEF_RS_INIT_NONE \
    static int rs1_init(rs_t *rs, char const *settings, size_t len, void **state) { \
        (void)rs; (void)settings; (void)len; *state = NULL; return 0; \
    }

/* RS_OPEN(cb) / RS_OPEN_NONE. */
#define RS1_DEF_RS_OPEN(cb) \
    static int rs1_open(rs_t *rs, void *state, uint64_t client, struct rs_open_info const *info) { \
        (void)state; (void)client; (void)info; \
        rs1_current_rs = rs; \
        return rs1_status(#cb, cb(rs)); \
    }
#define RS1_DEF_RS_OPEN_NONE \
    static int rs1_open(rs_t *rs, void *state, uint64_t client, struct rs_open_info const *info) { \
        (void)rs; (void)state; (void)client; (void)info; return 0; \
    }

/* RS_CLOSE(cb) / RS_CLOSE_NONE. */
#define RS1_DEF_RS_CLOSE(cb) \
    static int rs1_close(rs_t *rs, void *state, uint64_t client, uint16_t code) { \
        (void)state; (void)client; (void)code; \
        rs1_current_rs = rs; \
        return rs1_status(#cb, cb(rs)); \
    }
#define RS1_DEF_RS_CLOSE_NONE \
    static int rs1_close(rs_t *rs, void *state, uint64_t client, uint16_t code) { \
        (void)rs; (void)state; (void)client; (void)code; return 0; \
    }

/* RS_TIMER(cb, min_us, incr_us, max_us) / RS_TIMER_NONE. */
#define RS1_DEF_RS_TIMER(cb, min_us, incr_us, max_us) \
    static int rs1_periodic(rs_t *rs, void *state) { \
        (void)state; \
        rs1_current_rs = rs; \
        rs_timer_ret next = cb(rs); \
        if (next == RS_TIMER_FATAL) { \
            rs1_log(LOG_ERR, #cb, 0, "returned RS_TIMER_FATAL: keeping the interval"); \
            return RS_TIMER_HOLD; \
        } \
        return next; \
    }
#define RS1_DEF_RS_TIMER_NONE
#define RS1_TIMER_RS_TIMER(cb, min_us, incr_us, max_us) \
    .periodic = rs1_periodic, .periodic_min_us = (min_us) ? (min_us) : 1, \
    .periodic_incr_us = (incr_us), .periodic_max_us = (max_us)
#define RS1_TIMER_RS_TIMER_NONE .periodic = NULL

static inline void rs1_destroy(void *state) {
    free(state);
}

/* RingSocket 1's RS_APP: five positional arguments. */
#define RS_APP(init_macro, open_macro, read_macro, close_macro, timer_macro) \
    RS1_DEF_##init_macro \
    RS1_DEF_##open_macro \
    RS1_DEF_##close_macro \
    RS1_DEF_##timer_macro \
    static int rs1_read(rs_t *rs, void *rs1_state, uint64_t rs1_client, uint32_t rs1_kind, \
                        uint8_t const *rs1_payload, size_t rs1_size) { \
        (void)rs1_state; (void)rs1_client; (void)rs1_kind; \
        rs1_current_rs = rs; \
        size_t rs1_i = 0; \
        RS1_READ_##read_macro \
        return 0; \
    } \
    __attribute__((visibility("default"))) const struct rs_app_descriptor RS_APP_SYMBOL = { \
        .magic = RS_ABI_MAGIC, \
        .abi_version = RS_ABI_VERSION, \
        .size = sizeof(struct rs_app_descriptor), \
        .name = "ringsocket1 app", \
        .init = rs1_init, \
        .open = rs1_open, \
        .read = rs1_read, \
        .close = rs1_close, \
        .destroy = rs1_destroy, \
        RS1_TIMER_##timer_macro \
    }

#endif /* RINGSOCKET1_COMPAT_H */

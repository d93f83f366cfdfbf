// SPDX-License-Identifier: MIT
// A RingSocket 1 app (written against RingSocket 1's API, compiled with
// crates/abi/include/ringsocket1) that exercises the read macros, the getters, the
// writers, the timer and RS_CB_FATAL, and the two defects of RingSocket 1 that
// ringsocket keeps out. Every binary message starts with a case byte:
//
//   1 u64[1..1000] (RS_NET_HEAP)   -> "heap N SUM ok|short" (short: the array is smaller
//                                     than N * sizeof(uint64_t), RingSocket 1's bug)
//   2 u64 id (RS_NTOH)             -> rs_to_every_except_single(id): "except"
//   3                              -> the client id, in decimal
//   4 u16 n (RS_NTOH), str (RS_STR)-> "str n STR LEN"
//   5 u32[2] (RS_NET), i16[3] (RS_NTOH)  -> "arr A B C D E"
//   6                              -> "addr PORT ENDPOINT"
//   7                              -> returns RS_CB_FATAL
//   8                              -> "ticks N" (timer callbacks so far, N > 0 after a while)
//   9 u8[0..64] (RS_NET_VLA)       -> the bytes back, binary, plus one 0xFF
// A text message starting with 't' (RS_CASE_UTF8, RS_STR_HEAP) comes back upper-cased.

#define _POSIX_C_SOURCE 201112L

#include <ringsocket.h>
#include <malloc.h>

struct defects {
    uint64_t ticks;
    uint64_t opens;
};

static rs_cb_ret init_cb(rs_t * rs) {
    struct defects * d = rs_get_app_data(rs);
    d->ticks = 0;
    RS_LOG(LOG_INFO, "defects app ready, max message %" PRIu64,
        rs_get_conf(rs)->max_ws_msg_size);
    return RS_CB_OK;
}

static rs_cb_ret open_cb(rs_t * rs) {
    struct defects * d = rs_get_app_data(rs);
    d->opens++;
    return RS_CB_OK;
}

static rs_cb_ret close_cb(rs_t * rs) {
    RS_LOG(LOG_DEBUG, "client %" PRIu64 " closed", rs_get_client_id(rs));
    return RS_CB_OK;
}

static rs_cb_ret heap_cb(rs_t * rs, uint64_t * arr, size_t elem_c) {
    uint64_t sum = 0;
    for (size_t i = 0; i < elem_c; i++) {
        sum += arr[i];
    }
    bool big_enough = malloc_usable_size(arr) >= elem_c * sizeof(uint64_t);
    char reply[96];
    int n = snprintf(reply, sizeof(reply), "heap %zu %" PRIu64 " %s", elem_c, sum,
        big_enough ? "ok" : "short");
    free(arr);
    rs_w_p(rs, reply, (size_t) n);
    rs_to_cur(rs, RS_UTF8);
    return RS_CB_OK;
}

static rs_cb_ret except_cb(rs_t * rs, uint64_t id) {
    rs_w_str(rs, "except");
    rs_to_every_except_single(rs, RS_UTF8, id);
    return RS_CB_OK;
}

static rs_cb_ret id_cb(rs_t * rs) {
    char reply[32];
    int n = snprintf(reply, sizeof(reply), "%" PRIu64, rs_get_client_id(rs));
    rs_w_p(rs, reply, (size_t) n);
    rs_to_cur(rs, RS_UTF8);
    return RS_CB_OK;
}

static rs_cb_ret str_cb(rs_t * rs, uint16_t n, char * str, size_t len) {
    char reply[160];
    int m = snprintf(reply, sizeof(reply), "str %u %s %zu", (unsigned) n, str, len);
    rs_w_p(rs, reply, (size_t) m);
    rs_to_cur(rs, RS_UTF8);
    return RS_CB_OK;
}

static rs_cb_ret arr_cb(rs_t * rs, uint32_t * a, int16_t * b) {
    char reply[96];
    int n = snprintf(reply, sizeof(reply), "arr %u %u %d %d %d", (unsigned) a[0],
        (unsigned) a[1], b[0], b[1], b[2]);
    rs_w_p(rs, reply, (size_t) n);
    rs_to_cur(rs, RS_UTF8);
    return RS_CB_OK;
}

static rs_cb_ret addr_cb(rs_t * rs) {
    struct sockaddr_storage addr = {0};
    if (rs_get_client_addr(rs, &addr) == -1) {
        RS_LOG_ERRNO(LOG_ERR, "Unsuccessful rs_get_client_addr()");
        return RS_CB_FATAL;
    }
    int port = RS_NTOH16(addr.ss_family == AF_INET6 ?
        ((struct sockaddr_in6 *) &addr)->sin6_port :
        ((struct sockaddr_in *) &addr)->sin_port);
    char reply[64];
    int n = snprintf(reply, sizeof(reply), "addr %d %" PRIu64, port,
        rs_get_endpoint_id(rs));
    rs_w_p(rs, reply, (size_t) n);
    rs_to_cur(rs, RS_UTF8);
    return RS_CB_OK;
}

static rs_cb_ret fatal_cb(rs_t * rs) {
    (void) rs;
    return RS_CB_FATAL;
}

static rs_cb_ret ticks_cb(rs_t * rs) {
    struct defects * d = rs_get_app_data(rs);
    char reply[32];
    int n = snprintf(reply, sizeof(reply), "ticks %" PRIu64, d->ticks);
    rs_w_p(rs, reply, (size_t) n);
    rs_to_cur(rs, RS_UTF8);
    return RS_CB_OK;
}

static rs_cb_ret vla_cb(rs_t * rs, uint8_t * bytes, size_t elem_c) {
    rs_w_p(rs, bytes, elem_c);
    rs_w_uint8(rs, 0xFF);
    rs_to_cur(rs, RS_BIN);
    return RS_CB_OK;
}

static rs_cb_ret text_cb(rs_t * rs, char * str, size_t len) {
    for (size_t i = 0; i < len; i++) {
        if (str[i] >= 'a' && str[i] <= 'z') {
            str[i] -= 'a' - 'A';
        }
    }
    rs_w_p(rs, str, len);
    rs_to_cur(rs, RS_UTF8);
    return RS_CB_OK;
}

static rs_timer_ret timer_cb(rs_t * rs) {
    struct defects * d = rs_get_app_data(rs);
    d->ticks++;
    return RS_TIMER_INCR;
}

RS_APP(
    RS_INIT(init_cb, sizeof(struct defects)),
    RS_OPEN(open_cb),
    RS_READ_SWITCH(
        RS_CASE_BIN(1, heap_cb, RS_NET_HEAP(uint64_t, 1, 1000)),
        RS_CASE_BIN(2, except_cb, RS_NTOH(uint64_t)),
        RS_CASE_ANY(3, id_cb),
        RS_CASE_BIN(4, str_cb, RS_NTOH(uint16_t), RS_STR(0, 100)),
        RS_CASE_BIN(5, arr_cb, RS_NET(uint32_t, 2), RS_NTOH(int16_t, 3)),
        RS_CASE_BIN(6, addr_cb),
        RS_CASE_BIN(7, fatal_cb),
        RS_CASE_BIN(8, ticks_cb),
        RS_CASE_BIN(9, vla_cb, RS_NET_VLA(uint8_t, 0, 64)),
        RS_CASE_UTF8('t', text_cb, RS_STR_HEAP(0, 1000))
    ),
    RS_CLOSE(close_cb),
    RS_TIMER(timer_cb, 20000, 20000, 100000)
);

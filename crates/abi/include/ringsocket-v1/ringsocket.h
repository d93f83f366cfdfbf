/*
 * ringsocket.h, ABI version 1, frozen: the header v1 plugins were built with. New
 * plugins include ../ringsocket.h (version 2); ringsocket loads both.
 *
 * ABI version 1. A plugin is a shared object that defines one descriptor symbol,
 * `ringsocket_plugin`, with RS_APP(...). The server checks its magic and version
 * before reading anything else, and refuses a plugin built for another version.
 *
 *     #include <ringsocket.h>
 *     static int on_read(rs_t *rs, void *state, uint64_t client, uint32_t kind,
 *                        const uint8_t *data, size_t len) {
 *         return rs_to_cur(rs, kind, data, len);
 *     }
 *     RS_APP(.name = "echo", .read = on_read);
 *
 * Every callback runs on the app's own thread, one at a time. Callbacks return 0 on
 * success; a non-zero return from open/read closes that client with 1011 (the app keeps
 * serving everyone else), and from init refuses to start the server.
 */
#ifndef RINGSOCKET_H
#define RINGSOCKET_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* "RSAP": the first four bytes of every descriptor. */
#define RS_ABI_MAGIC 0x52534150u
/* The ABI version this header describes. */
#define RS_ABI_VERSION 1u

/* Message kinds. Text messages are always valid UTF-8, both ways. */
#define RS_BIN 0u
#define RS_UTF8 1u

/* Recipients of rs_send(). */
#define RS_TO_CUR 0u          /* the client of the current open/read callback */
#define RS_TO_SINGLE 1u       /* ids[0] */
#define RS_TO_MULTI 2u        /* every id in ids[0..id_count] */
#define RS_TO_EVERY 3u        /* every client of this app */
#define RS_TO_EVERY_EXCEPT 4u /* every client of this app but those in ids */

/* Results of host calls. */
#define RS_OK 0
#define RS_ERR_CONTEXT (-1) /* not allowed in this callback (e.g. RS_TO_CUR in a timer) */
#define RS_ERR_TOO_BIG (-2) /* larger than max_ws_msg_size */
#define RS_ERR_INVALID (-3) /* a bad argument: kind, target, code, NULL pointer, UTF-8 */

/* Log levels for rs_log(). */
#define RS_LOG_ERROR 1
#define RS_LOG_WARN 2
#define RS_LOG_INFO 3
#define RS_LOG_DEBUG 4

/* The per-app-thread handle every callback gets; opaque but for its first member. */
typedef struct rs rs_t;

/* What the open callback learns about a new client. Strings are not NUL-terminated. */
struct rs_open_info {
    uint16_t endpoint_id;     /* the endpoint's endpoint_id from the config */
    const char *url_path;     /* the endpoint path the client asked for */
    size_t url_path_len;
    const char *subprotocol;  /* the negotiated Sec-WebSocket-Protocol, or NULL */
    size_t subprotocol_len;
};

/* The functions the server offers a plugin. Use the rs_* wrappers below. */
struct rs_host_api {
    uint32_t size; /* sizeof(struct rs_host_api) as the server built it */
    int (*send)(rs_t *rs, uint32_t target, const uint64_t *ids, size_t id_count,
                uint32_t kind, const void *data, size_t len);
    int (*close)(rs_t *rs, uint64_t client_id, uint16_t code, const char *reason,
                 size_t reason_len);
    int (*set_timer)(rs_t *rs, uint64_t delay_us);
    uint64_t (*current_client)(const rs_t *rs);
    void (*log)(rs_t *rs, int level, const char *msg, size_t len);
};

/* The layout every rs_t starts with. */
struct rs_header {
    const struct rs_host_api *api;
};

typedef int (*rs_init_cb)(rs_t *rs, const char *settings_json, size_t settings_len,
                          void **state);
typedef int (*rs_open_cb)(rs_t *rs, void *state, uint64_t client_id,
                          const struct rs_open_info *info);
typedef int (*rs_read_cb)(rs_t *rs, void *state, uint64_t client_id, uint32_t kind,
                          const uint8_t *data, size_t len);
typedef int (*rs_close_cb)(rs_t *rs, void *state, uint64_t client_id, uint16_t code);
typedef int (*rs_timer_cb)(rs_t *rs, void *state);
typedef void (*rs_destroy_cb)(void *state);

/* The descriptor a plugin exports as `ringsocket_plugin`. Any callback may be NULL. */
struct rs_app_descriptor {
    uint32_t magic;       /* RS_ABI_MAGIC */
    uint32_t abi_version; /* RS_ABI_VERSION */
    uint32_t size;        /* sizeof(struct rs_app_descriptor) */
    uint32_t reserved;    /* 0 */
    const char *name;     /* NUL-terminated, informational */
    rs_init_cb init;      /* once, before any client connects; may set *state */
    rs_open_cb open;      /* a client completed the handshake */
    rs_read_cb read;      /* a complete message from a client */
    rs_close_cb close;    /* a client is gone (code 1005: none given, 1006: abnormal) */
    rs_timer_cb timer;    /* the delay set with rs_set_timer() has passed */
    rs_destroy_cb destroy; /* at shutdown, after the last callback */
};

#define RS_APP_SYMBOL ringsocket_plugin

/* Defines the plugin's descriptor: RS_APP(.name = "x", .read = on_read, ...); */
#define RS_APP(...)                                                                    \
    __attribute__((visibility("default"))) const struct rs_app_descriptor               \
        RS_APP_SYMBOL = {.magic = RS_ABI_MAGIC,                                          \
                         .abi_version = RS_ABI_VERSION,                                  \
                         .size = sizeof(struct rs_app_descriptor),                       \
                         __VA_ARGS__}

#define RS_API(rs) (((const struct rs_header *)(rs))->api)

/* Send `len` bytes of `kind` to the targets. Returns RS_OK or an RS_ERR_*. */
static inline int rs_send(rs_t *rs, uint32_t target, const uint64_t *ids, size_t id_count,
                          uint32_t kind, const void *data, size_t len) {
    return RS_API(rs)->send(rs, target, ids, id_count, kind, data, len);
}
static inline int rs_to_cur(rs_t *rs, uint32_t kind, const void *data, size_t len) {
    return rs_send(rs, RS_TO_CUR, NULL, 0, kind, data, len);
}
static inline int rs_to_single(rs_t *rs, uint64_t client_id, uint32_t kind, const void *data,
                               size_t len) {
    return rs_send(rs, RS_TO_SINGLE, &client_id, 1, kind, data, len);
}
static inline int rs_to_multi(rs_t *rs, const uint64_t *ids, size_t id_count, uint32_t kind,
                              const void *data, size_t len) {
    return rs_send(rs, RS_TO_MULTI, ids, id_count, kind, data, len);
}
static inline int rs_to_every(rs_t *rs, uint32_t kind, const void *data, size_t len) {
    return rs_send(rs, RS_TO_EVERY, NULL, 0, kind, data, len);
}
static inline int rs_to_every_except(rs_t *rs, const uint64_t *ids, size_t id_count,
                                     uint32_t kind, const void *data, size_t len) {
    return rs_send(rs, RS_TO_EVERY_EXCEPT, ids, id_count, kind, data, len);
}
/* Close a client with a code (1000, 1001, 1003, 1007-1009, 1011 or 3000-4999). */
static inline int rs_close(rs_t *rs, uint64_t client_id, uint16_t code, const char *reason,
                           size_t reason_len) {
    return RS_API(rs)->close(rs, client_id, code, reason, reason_len);
}
/* Call the timer callback once, `delay_us` microseconds from now (replaces any earlier). */
static inline int rs_set_timer(rs_t *rs, uint64_t delay_us) {
    return RS_API(rs)->set_timer(rs, delay_us);
}
/* The client of the current open/read/close callback, or 0. */
static inline uint64_t rs_current_client(const rs_t *rs) {
    return RS_API(rs)->current_client(rs);
}
static inline void rs_log(rs_t *rs, int level, const char *msg, size_t len) {
    RS_API(rs)->log(rs, level, msg, len);
}

#ifdef __cplusplus
}
#endif

#endif /* RINGSOCKET_H */

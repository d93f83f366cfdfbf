/*
 * ringsocket.h: the C ABI between the ringsocket server and its app plugins.
 *
 * ABI version 6 (additive: every struct of an earlier version keeps its layout and
 * gains fields at its end; ringsocket loads plugins of versions 1 to 6; version 2 added
 * metadata, writers, timers and events, version 3 topics, version 4 upgrade decisions
 * and plain HTTP answers, version 5 the ping callback, version 6 the control callback
 * for `ringsocketctl app`). A plugin is a shared object
 * that defines one descriptor symbol, `ringsocket_plugin`, with RS_APP(...). The server
 * checks its magic and version before reading anything else, and refuses a plugin
 * built for a version it does not know, naming both versions.
 *
 *     #include <ringsocket.h>
 *     static int on_read(rs_t *rs, void *state, uint64_t client, uint32_t kind,
 *                        const uint8_t *data, size_t len) {
 *         rs_w_p(rs, data, len);          // written in place into the outbound ring
 *         return rs_to_cur(rs, kind);     // ...and sent to the client being read
 *     }
 *     RS_APP(.name = "echo", .read = on_read);
 *
 * Every callback runs on the app's own thread, one at a time; docs/apps.md says which
 * calls each one may make and how long every pointer lives. Callbacks return 0 on
 * success; a non-zero return from open/read/event closes that client with 1011 (the app
 * keeps serving everyone else), and from init refuses to start the server. Host calls
 * return RS_OK or a negative RS_ERR_*; none of them crashes on a bad argument.
 */
#ifndef RINGSOCKET_H
#define RINGSOCKET_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#ifdef __cplusplus
extern "C" {
#endif

/* "RSAP": the first four bytes of every descriptor. */
#define RS_ABI_MAGIC 0x52534150u
/* The ABI version this header describes. */
#define RS_ABI_VERSION 6u

/* Message kinds. Text messages are always valid UTF-8, both ways. */
#define RS_BIN 0u
#define RS_UTF8 1u

/* Recipients of rs_send() and rs_to(). */
#define RS_TO_CUR 0u          /* the client of the current open/read callback */
#define RS_TO_SINGLE 1u       /* ids[0] */
#define RS_TO_MULTI 2u        /* every id in ids[0..id_count] */
#define RS_TO_EVERY 3u        /* every client of this app */
#define RS_TO_EVERY_EXCEPT 4u /* every client of this app but those in ids */

/* Results of host calls. */
#define RS_OK 0
#define RS_ERR_CONTEXT (-1)   /* not allowed in this callback (e.g. RS_TO_CUR in a timer) */
#define RS_ERR_TOO_BIG (-2)   /* larger than max_ws_msg_size (or the event size limit) */
#define RS_ERR_INVALID (-3)   /* a bad argument: kind, target, code, NULL pointer, UTF-8 */
#define RS_ERR_FULL (-4)      /* v2: the app's event queue is full; try again later */
#define RS_ERR_CLOSED (-5)    /* v2: the app has stopped and takes no more events */
#define RS_ERR_NOT_FOUND (-6) /* v2: no such client (gone, or never this app's) */

/* v3: the longest topic name, in bytes. */
#define RS_MAX_TOPIC_LEN 255u

/* Log levels for rs_log(). */
#define RS_LOG_ERROR 1
#define RS_LOG_WARN 2
#define RS_LOG_INFO 3
#define RS_LOG_DEBUG 4

/* v2: what a periodic timer callback returns: the next interval (RingSocket 1's
 * numbering; anything else is logged as an error and keeps the interval). */
#define RS_TIMER_MIN 1   /* back to the minimum */
#define RS_TIMER_HOLD 2  /* keep the interval */
#define RS_TIMER_INCR 3  /* add the increment, up to the maximum */
#define RS_TIMER_MAX 4   /* jump to the maximum */
#define RS_TIMER_NEVER 5 /* stop the timer (rs_set_periodic starts it again) */

/* v2: address families in struct rs_addr. */
#define RS_ADDR_IPV4 4u
#define RS_ADDR_IPV6 6u

/* The per-app-thread handle every callback gets. */
typedef struct rs rs_t;

/* v2: a peer's IP address and port. */
struct rs_addr {
    uint16_t family; /* RS_ADDR_IPV4 or RS_ADDR_IPV6 */
    uint16_t port;   /* host byte order */
    uint8_t ip[16];  /* network byte order; an IPv4 address takes the first 4 bytes */
};

/* v2: what the server keeps about a client for as long as it is connected. */
struct rs_client_info {
    struct rs_addr peer;  /* the TCP peer (a proxy's address behind one: see X-Forwarded-For) */
    uint16_t endpoint_id; /* the endpoint's endpoint_id from the config */
    uint16_t reserved[3];
};

/* What the open callback learns about a new client. Strings are not NUL-terminated and
 * live until the open callback returns. */
struct rs_open_info {
    uint16_t endpoint_id;     /* the endpoint's endpoint_id from the config */
    const char *url_path;     /* the endpoint path the client asked for */
    size_t url_path_len;
    const char *subprotocol;  /* the negotiated Sec-WebSocket-Protocol, or NULL */
    size_t subprotocol_len;
    /* v2: */
    const char *target;       /* the request target as sent: "/chat?jwt=abc" */
    size_t target_len;
    const char *query;        /* the query string after '?' (without it), or NULL */
    size_t query_len;
    const char *head;         /* the raw request head: request line and header lines */
    size_t head_len;
    struct rs_addr peer;      /* the client's address */
    /* v4: */
    uint64_t data;            /* what the upgrade callback attached with rs_accept (or 0) */
};

/* v4: a request the upgrade callback decides or the http callback answers. Strings are
 * not NUL-terminated and live until the callback returns. Answer with rs_accept() or
 * rs_respond(), inside the callback or later (from any callback of the app thread,
 * e.g. an event callback once another thread has looked something up). Unanswered
 * after app_answer_timeout seconds, the client gets 503 (upgrade) or 504 (http). */
struct rs_request {
    uint32_t size;            /* sizeof(struct rs_request) as the server built it */
    uint16_t endpoint_id;     /* the endpoint's endpoint_id from the config */
    uint16_t is_upgrade;      /* 1: a WebSocket upgrade; 0: a plain HTTP request */
    uint64_t request_id;      /* what rs_accept/rs_respond name; an accepted client keeps it */
    const char *method;       /* "GET", "POST", ... */
    size_t method_len;
    const char *target;       /* as sent: "/send?user=1" */
    size_t target_len;
    const char *path;         /* without the query: "/send" */
    size_t path_len;
    const char *query;        /* after '?', or NULL */
    size_t query_len;
    const char *head;         /* the raw request head: request line and header lines */
    size_t head_len;
    const uint8_t *body;      /* a plain request's body (max_http_body_size at most) */
    size_t body_len;
    const char *subprotocol;  /* the subprotocol an accepted upgrade gets, or NULL */
    size_t subprotocol_len;
    struct rs_addr peer;      /* the client's address */
};

/* v2: settings of the running server an app may read (rs_get_conf). */
struct rs_conf {
    uint32_t size;            /* sizeof(struct rs_conf) as the server built it */
    uint16_t worker_c;        /* worker threads */
    uint16_t app_c;           /* apps loaded */
    uint64_t max_ws_msg_size; /* the largest message, either way */
    uint32_t event_queue_len; /* events an app's queue holds (rs_post_event) */
    uint32_t max_event_size;  /* the largest event */
};

/* v2: a handle other threads of the app use to post events to it. Thread-safe. */
typedef struct rs_event_handle rs_event_handle_t;
struct rs_event_handle {
    int (*post)(rs_event_handle_t *handle, const void *data, size_t len);
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
    /* v2: */
    int (*w_reserve)(rs_t *rs, size_t additional);
    int (*to)(rs_t *rs, uint32_t target, const uint64_t *ids, size_t id_count, uint32_t kind);
    int (*client_info)(rs_t *rs, uint64_t client_id, struct rs_client_info *out);
    const char *(*header)(rs_t *rs, const char *name, size_t name_len, size_t *value_len);
    int (*set_periodic)(rs_t *rs, uint64_t min_us, uint64_t incr_us, uint64_t max_us);
    rs_event_handle_t *(*event_handle)(rs_t *rs);
    const struct rs_conf *(*conf)(const rs_t *rs);
    /* v3: */
    int (*subscribe)(rs_t *rs, uint64_t client_id, const void *topic, size_t topic_len);
    int (*unsubscribe)(rs_t *rs, uint64_t client_id, const void *topic, size_t topic_len);
    int (*publish)(rs_t *rs, const void *topic, size_t topic_len, uint64_t except_client,
                   uint32_t kind, const void *data, size_t len);
    int (*to_topic)(rs_t *rs, const void *topic, size_t topic_len, uint64_t except_client,
                    uint32_t kind);
    int64_t (*topic_count)(rs_t *rs, const void *topic, size_t topic_len);
    /* v4: */
    int (*accept)(rs_t *rs, uint64_t request_id, uint64_t data);
    int (*respond)(rs_t *rs, uint64_t request_id, uint16_t status, const char *headers,
                   size_t headers_len, const void *body, size_t body_len);
    uint64_t (*client_data)(rs_t *rs, uint64_t client_id);
    /* v6: */
    int (*control_reply)(rs_t *rs, const void *data, size_t len);
};

/* The layout every rs_t starts with. The server writes every field but w_len, which
 * the rs_w_* writers advance. */
struct rs_header {
    const struct rs_host_api *api;
    /* v2: */
    uint8_t *w_ptr;           /* the message being written (rs_w_*); NULL before the first */
    size_t w_len;             /* bytes written so far */
    size_t w_cap;             /* bytes that fit at w_ptr before rs_w_reserve is needed */
    void *app_state;          /* what init stored in *state */
    uint64_t cur_client;      /* the client of the current open/read/close callback, or 0 */
    uint32_t cur_kind;        /* the kind of the message being read */
    uint16_t cur_endpoint_id; /* the endpoint of cur_client */
    uint8_t log_level;        /* the most detailed RS_LOG_* level the server logs */
    uint8_t reserved;
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
/* v2: */
typedef int (*rs_event_cb)(rs_t *rs, void *state, const uint8_t *data, size_t len);
typedef int (*rs_periodic_cb)(rs_t *rs, void *state);
/* v4: */
typedef int (*rs_request_cb)(rs_t *rs, void *state, const struct rs_request *req);
/* v5: */
typedef int (*rs_ping_cb)(rs_t *rs, void *state, uint64_t client_id);
/* v6: argv holds argc NUL-terminated strings (the words after `ringsocketctl app APP`). */
typedef int (*rs_control_cb)(rs_t *rs, void *state, int argc, const char *const *argv);

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
    /* v2: */
    rs_event_cb event;          /* an event another thread posted (rs_post_event) */
    rs_periodic_cb periodic;    /* the periodic timer; returns an RS_TIMER_* */
    uint64_t periodic_min_us;   /* its first and smallest interval (0: not started) */
    uint64_t periodic_incr_us;  /* what RS_TIMER_INCR adds */
    uint64_t periodic_max_us;   /* its largest interval */
    /* v4: */
    rs_request_cb upgrade; /* decides each upgrade before the 101 (else all are accepted) */
    rs_request_cb http;    /* answers plain HTTP requests on the app's endpoints */
    /* v5: */
    rs_ping_cb ping;       /* a client sent a ping or a pong (only reported to apps with it) */
    /* v6: */
    rs_control_cb control; /* an operator's command: reply with rs_control_reply, return 0 */
};

#define RS_APP_SYMBOL ringsocket_plugin

/* ringsocket1/ringsocket.h (RingSocket 1 source compatibility) includes this header
 * with RS_RINGSOCKET1_COMPAT defined and brings its own RS_APP and rs_close. */
#ifndef RS_RINGSOCKET1_COMPAT
/* Defines the plugin's descriptor: RS_APP(.name = "x", .read = on_read, ...); */
#define RS_APP(...)                                                                    \
    __attribute__((visibility("default"))) const struct rs_app_descriptor               \
        RS_APP_SYMBOL = {.magic = RS_ABI_MAGIC,                                          \
                         .abi_version = RS_ABI_VERSION,                                  \
                         .size = sizeof(struct rs_app_descriptor),                       \
                         __VA_ARGS__}
#endif

#define RS_HEADER(rs) ((struct rs_header *)(rs))
#define RS_API(rs) (((const struct rs_header *)(rs))->api)

/* ---- Sending a buffer you already have (copied into the outbound ring). ---- */

/* Send `len` bytes of `kind` to the targets. Returns RS_OK or an RS_ERR_*. */
static inline int rs_send(rs_t *rs, uint32_t target, const uint64_t *ids, size_t id_count,
                          uint32_t kind, const void *data, size_t len) {
    return RS_API(rs)->send(rs, target, ids, id_count, kind, data, len);
}

/* ---- Writing a message in place, then sending it (rs_w_*, then rs_to_*). ----
 * The writers append to the message being built, straight into the outbound ring;
 * a message larger than the reservation moves to the heap once. They return RS_OK, or
 * RS_ERR_TOO_BIG past max_ws_msg_size (then the next rs_to_* fails and discards it). */

static inline int rs_w_p(rs_t *rs, const void *data, size_t len) {
    struct rs_header *h = RS_HEADER(rs);
    if (h->w_cap - h->w_len < len) {
        int err = h->api->w_reserve(rs, len);
        if (err) {
            return err;
        }
    }
    if (len) {
        memcpy(h->w_ptr + h->w_len, data, len);
        h->w_len += len;
    }
    return RS_OK;
}
static inline int rs_w_str(rs_t *rs, const char *str) {
    return rs_w_p(rs, str, strlen(str));
}
static inline int rs_w_uint8(rs_t *rs, uint8_t v) {
    struct rs_header *h = RS_HEADER(rs);
    if (h->w_len < h->w_cap) {
        h->w_ptr[h->w_len++] = v;
        return RS_OK;
    }
    return rs_w_p(rs, &v, 1);
}
static inline int rs_w_int8(rs_t *rs, int8_t v) { return rs_w_uint8(rs, (uint8_t)v); }
static inline int rs_w_uint16(rs_t *rs, uint16_t v) { return rs_w_p(rs, &v, 2); }
static inline int rs_w_uint32(rs_t *rs, uint32_t v) { return rs_w_p(rs, &v, 4); }
static inline int rs_w_uint64(rs_t *rs, uint64_t v) { return rs_w_p(rs, &v, 8); }
static inline int rs_w_int16(rs_t *rs, int16_t v) { return rs_w_p(rs, &v, 2); }
static inline int rs_w_int32(rs_t *rs, int32_t v) { return rs_w_p(rs, &v, 4); }
static inline int rs_w_int64(rs_t *rs, int64_t v) { return rs_w_p(rs, &v, 8); }
/* Network byte order (big-endian). */
static inline int rs_w_uint16_hton(rs_t *rs, uint16_t v) {
    uint8_t b[2] = {(uint8_t)(v >> 8), (uint8_t)v};
    return rs_w_p(rs, b, 2);
}
static inline int rs_w_uint32_hton(rs_t *rs, uint32_t v) {
    uint8_t b[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v};
    return rs_w_p(rs, b, 4);
}
static inline int rs_w_uint64_hton(rs_t *rs, uint64_t v) {
    uint8_t b[8];
    for (int i = 0; i < 8; i++) {
        b[i] = (uint8_t)(v >> (56 - 8 * i));
    }
    return rs_w_p(rs, b, 8);
}
static inline int rs_w_int16_hton(rs_t *rs, int16_t v) { return rs_w_uint16_hton(rs, (uint16_t)v); }
static inline int rs_w_int32_hton(rs_t *rs, int32_t v) { return rs_w_uint32_hton(rs, (uint32_t)v); }
static inline int rs_w_int64_hton(rs_t *rs, int64_t v) { return rs_w_uint64_hton(rs, (uint64_t)v); }

/* Sends what rs_w_* wrote as one message of `kind`, and starts a new one. */
static inline int rs_to(rs_t *rs, uint32_t target, const uint64_t *ids, size_t id_count,
                        uint32_t kind) {
    return RS_API(rs)->to(rs, target, ids, id_count, kind);
}
static inline int rs_to_cur(rs_t *rs, uint32_t kind) {
    return rs_to(rs, RS_TO_CUR, NULL, 0, kind);
}
static inline int rs_to_single(rs_t *rs, uint32_t kind, uint64_t client_id) {
    return rs_to(rs, RS_TO_SINGLE, &client_id, 1, kind);
}
static inline int rs_to_multi(rs_t *rs, uint32_t kind, const uint64_t *ids, size_t id_count) {
    return rs_to(rs, RS_TO_MULTI, ids, id_count, kind);
}
static inline int rs_to_every(rs_t *rs, uint32_t kind) {
    return rs_to(rs, RS_TO_EVERY, NULL, 0, kind);
}
static inline int rs_to_every_except_single(rs_t *rs, uint32_t kind, uint64_t client_id) {
    return rs_to(rs, RS_TO_EVERY_EXCEPT, &client_id, 1, kind);
}
static inline int rs_to_every_except_multi(rs_t *rs, uint32_t kind, const uint64_t *ids,
                                           size_t id_count) {
    return rs_to(rs, RS_TO_EVERY_EXCEPT, ids, id_count, kind);
}
static inline int rs_to_every_except_cur(rs_t *rs, uint32_t kind) {
    uint64_t cur = RS_HEADER(rs)->cur_client;
    if (!cur) {
        return RS_ERR_CONTEXT;
    }
    return rs_to(rs, RS_TO_EVERY_EXCEPT, &cur, 1, kind);
}

/* ---- Clients, closing, metadata. ---- */

#ifndef RS_RINGSOCKET1_COMPAT
/* Close a client with a code (1000, 1001, 1003, 1007-1009, 1011 or 3000-4999). */
static inline int rs_close(rs_t *rs, uint64_t client_id, uint16_t code, const char *reason,
                           size_t reason_len) {
    return RS_API(rs)->close(rs, client_id, code, reason, reason_len);
}
#endif
/* The client of the current open/read/close callback, or 0. */
static inline uint64_t rs_current_client(const rs_t *rs) {
    return RS_API(rs)->current_client(rs);
}
/* v2: the address and endpoint of any connected client of this app. */
static inline int rs_client_info(rs_t *rs, uint64_t client_id, struct rs_client_info *out) {
    return RS_API(rs)->client_info(rs, client_id, out);
}
/* v2, open callback only: the value of request header `name` (any case), or NULL. The
 * value lives until the open callback returns. */
static inline const char *rs_header(rs_t *rs, const char *name, size_t *value_len) {
    return RS_API(rs)->header(rs, name, strlen(name), value_len);
}
/* v2: the server's settings. */
static inline const struct rs_conf *rs_get_conf(const rs_t *rs) {
    return RS_API(rs)->conf(rs);
}

/* ---- Topics (v3): named groups of clients, kept by the workers. ----
 * A publish crosses each worker's ring once (and only to workers with subscribers);
 * each worker encodes the frame once for all its subscribers. A client's subscriptions
 * end with its connection. Topic names are byte strings of 1..RS_MAX_TOPIC_LEN bytes. */

/* Subscribe a connected client of this app to `topic` (again: no change). */
static inline int rs_subscribe(rs_t *rs, uint64_t client_id, const void *topic, size_t topic_len) {
    return RS_API(rs)->subscribe(rs, client_id, topic, topic_len);
}
static inline int rs_unsubscribe(rs_t *rs, uint64_t client_id, const void *topic,
                                 size_t topic_len) {
    return RS_API(rs)->unsubscribe(rs, client_id, topic, topic_len);
}
/* Send `len` bytes to every subscriber of `topic` but `except_client` (0: none). */
static inline int rs_publish(rs_t *rs, const void *topic, size_t topic_len, uint64_t except_client,
                             uint32_t kind, const void *data, size_t len) {
    return RS_API(rs)->publish(rs, topic, topic_len, except_client, kind, data, len);
}
/* Send what rs_w_* wrote to every subscriber of `topic` but `except_client` (0: none). */
static inline int rs_to_topic(rs_t *rs, uint32_t kind, const void *topic, size_t topic_len,
                              uint64_t except_client) {
    return RS_API(rs)->to_topic(rs, topic, topic_len, except_client, kind);
}
/* Subscribers of `topic` on all workers (>= 0), or an RS_ERR_*. */
static inline int64_t rs_topic_count(rs_t *rs, const void *topic, size_t topic_len) {
    return RS_API(rs)->topic_count(rs, topic, topic_len);
}

/* ---- v4: deciding upgrades and answering plain HTTP requests. ---- */

/* Accept the upgrade request `request_id` (from the upgrade callback): the 101 goes
 * out and the open callback follows with info->data == data. RS_ERR_NOT_FOUND if the
 * request is no longer waiting (the client left, or it timed out). */
static inline int rs_accept(rs_t *rs, uint64_t request_id, uint64_t data) {
    return RS_API(rs)->accept(rs, request_id, data);
}
/* Answer request `request_id` with `status` (200-599), header lines ("Name: value",
 * separated by CRLF; NULL for none) and a body: a plain request's response, or an
 * upgrade's refusal (then the connection closes). The server writes Content-Length
 * and Connection itself (RS_ERR_INVALID if the headers name them or are malformed).
 * RS_ERR_NOT_FOUND if the request is no longer waiting. */
static inline int rs_respond(rs_t *rs, uint64_t request_id, uint16_t status,
                             const char *headers, size_t headers_len, const void *body,
                             size_t body_len) {
    return RS_API(rs)->respond(rs, request_id, status, headers, headers_len, body, body_len);
}
/* What rs_accept attached to a connected client (0 if nothing or not connected). */
static inline uint64_t rs_client_data(rs_t *rs, uint64_t client_id) {
    return RS_API(rs)->client_data(rs, client_id);
}

/* ---- v6: operators' commands. ---- */

/* The most reply bytes one control callback may give. */
#define RS_MAX_CONTROL_REPLY (1u << 20)

/* From the control callback only: appends `len` bytes to the reply `ringsocketctl app`
 * prints. RS_ERR_CONTEXT outside the control callback, RS_ERR_TOO_BIG past
 * RS_MAX_CONTROL_REPLY bytes in all. */
static inline int rs_control_reply(rs_t *rs, const void *data, size_t len) {
    return RS_API(rs)->control_reply(rs, data, len);
}

/* ---- Timers and events. ---- */

/* Call the timer callback once, `delay_us` microseconds from now (replaces any earlier). */
static inline int rs_set_timer(rs_t *rs, uint64_t delay_us) {
    return RS_API(rs)->set_timer(rs, delay_us);
}
/* v2: (re)start the periodic timer: first after min_us, then as its callback says. */
static inline int rs_set_periodic(rs_t *rs, uint64_t min_us, uint64_t incr_us, uint64_t max_us) {
    return RS_API(rs)->set_periodic(rs, min_us, incr_us, max_us);
}
/* v2: the handle other threads post events with; valid until destroy returns. */
static inline rs_event_handle_t *rs_event_handle(rs_t *rs) {
    return RS_API(rs)->event_handle(rs);
}
/* v2, any thread: queue an event (its bytes are copied) for the app's event callback.
 * Never blocks: RS_ERR_FULL when the queue is full, RS_ERR_TOO_BIG past max_event_size,
 * RS_ERR_CLOSED once the app has stopped. */
static inline int rs_post_event(rs_event_handle_t *handle, const void *data, size_t len) {
    return handle->post(handle, data, len);
}

static inline void rs_log(rs_t *rs, int level, const char *msg, size_t len) {
    RS_API(rs)->log(rs, level, msg, len);
}

#ifdef __cplusplus
}
#endif

#endif /* RINGSOCKET_H */

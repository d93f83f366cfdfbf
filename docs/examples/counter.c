/*
 * counter.c: a complete ringsocket app in C (ABI v2), from docs/apps.md.
 *
 * It greets each client by the name in its URL (`/counter?name=ann`) and its address,
 * answers every message with that client's message count, and every so often tells
 * everyone the totals (a periodic timer that backs off while nobody is connected).
 *
 * Build: cc -std=c11 -O2 -Wall -Wextra -shared -fPIC -I <ringsocket>/crates/abi/include \
 *            -o libcounter_c.so counter.c
 */
#include <arpa/inet.h>
#include <ringsocket.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_CLIENTS 4096

struct client {
    uint64_t id;
    uint64_t messages;
    char name[32];
};

/* The app's state: init allocates it, every callback gets it, destroy frees it. */
struct counter {
    struct client clients[MAX_CLIENTS];
    size_t client_c;
    uint64_t total;
};

static struct client *find(struct counter *c, uint64_t id) {
    for (size_t i = 0; i < c->client_c; i++) {
        if (c->clients[i].id == id) {
            return &c->clients[i];
        }
    }
    return NULL;
}

static int on_init(rs_t *rs, const char *settings, size_t len, void **state) {
    (void)rs;
    (void)settings;
    (void)len;
    struct counter *c = calloc(1, sizeof(*c));
    if (!c) {
        return -1; /* the server refuses to start, naming this app */
    }
    *state = c;
    return 0;
}

/* The value of `key` in a query string ("a=1&name=ann"), copied into out. */
static void query_value(const char *query, size_t len, const char *key, char *out,
                        size_t out_size) {
    size_t key_len = strlen(key);
    const char *end = query + len;
    snprintf(out, out_size, "anonymous");
    while (query && query < end) {
        const char *amp = memchr(query, '&', (size_t)(end - query));
        const char *stop = amp ? amp : end;
        if ((size_t)(stop - query) > key_len && !memcmp(query, key, key_len) &&
            query[key_len] == '=') {
            const char *value = query + key_len + 1;
            snprintf(out, out_size, "%.*s", (int)(stop - value), value);
            return;
        }
        query = amp ? amp + 1 : NULL;
    }
}

static int on_open(rs_t *rs, void *state, uint64_t client, const struct rs_open_info *info) {
    struct counter *c = state;
    if (c->client_c == MAX_CLIENTS) {
        return rs_close(rs, client, 4000, "full", 4);
    }
    struct client *cl = &c->clients[c->client_c++];
    cl->id = client;
    cl->messages = 0;
    query_value(info->query, info->query_len, "name", cl->name, sizeof(cl->name));

    char ip[INET6_ADDRSTRLEN] = "?";
    int family = info->peer.family == RS_ADDR_IPV6 ? AF_INET6 : AF_INET;
    inet_ntop(family, info->peer.ip, ip, sizeof(ip));
    size_t agent_len = 0;
    const char *agent = rs_header(rs, "User-Agent", &agent_len);

    char greeting[256];
    int n = snprintf(greeting, sizeof(greeting), "hello %s from %s port %u (%.*s)", cl->name,
                     ip, (unsigned)info->peer.port, agent ? (int)agent_len : 1,
                     agent ? agent : "-");
    rs_w_p(rs, greeting, (size_t)n); /* written in place into the outbound ring */
    return rs_to_cur(rs, RS_UTF8);
}

static int on_read(rs_t *rs, void *state, uint64_t client, uint32_t kind, const uint8_t *data,
                   size_t len) {
    (void)kind;
    (void)data;
    (void)len;
    struct counter *c = state;
    struct client *cl = find(c, client);
    if (!cl) {
        return -1; /* cannot happen; a non-zero return closes the client with 1011 */
    }
    cl->messages++;
    c->total++;
    char reply[64];
    int n = snprintf(reply, sizeof(reply), "count %llu", (unsigned long long)cl->messages);
    rs_w_p(rs, reply, (size_t)n);
    return rs_to_cur(rs, RS_UTF8);
}

static int on_close(rs_t *rs, void *state, uint64_t client, uint16_t code) {
    (void)rs;
    (void)code;
    struct counter *c = state;
    struct client *cl = find(c, client);
    if (cl) {
        *cl = c->clients[--c->client_c];
    }
    return 0;
}

/* Every 50 ms while clients are connected; backing off up to 1 s while none are. */
static int on_periodic(rs_t *rs, void *state) {
    struct counter *c = state;
    if (c->client_c == 0) {
        return RS_TIMER_INCR;
    }
    char stats[96];
    int n = snprintf(stats, sizeof(stats), "stats total=%llu clients=%zu",
                     (unsigned long long)c->total, c->client_c);
    rs_w_p(rs, stats, (size_t)n);
    rs_to_every(rs, RS_UTF8);
    return RS_TIMER_MIN;
}

static void on_destroy(void *state) {
    free(state);
}

RS_APP(.name = "counter", .init = on_init, .open = on_open, .read = on_read,
       .close = on_close, .periodic = on_periodic, .periodic_min_us = 50000,
       .periodic_incr_us = 50000, .periodic_max_us = 1000000, .destroy = on_destroy);

/* A test plugin (ABI v4 to v6) in C: decides upgrades by their query (`token=good` is
 * accepted with data 7, anything else refused with 403), answers plain requests with
 * "METHOD PATH BODY | results of wrong calls", and replies to `ringsocketctl app`
 * commands with "argc=N ARG|ARG|..." (status 3 for `fail`), proving the C side of the
 * ABI. */
#include <ringsocket.h>
#include <stdio.h>

static int on_upgrade(rs_t *rs, void *state, const struct rs_request *req) {
    (void)state;
    if (req->query && req->query_len == 10 && !memcmp(req->query, "token=good", 10)) {
        return rs_accept(rs, req->request_id, 7);
    }
    static const char headers[] = "Content-Type: text/plain";
    static const char body[] = "forbidden\n";
    return rs_respond(rs, req->request_id, 403, headers, sizeof headers - 1, body,
                      sizeof body - 1);
}

static int on_open(rs_t *rs, void *state, uint64_t client, const struct rs_open_info *info) {
    (void)state;
    char msg[64];
    int n = snprintf(msg, sizeof msg, "data=%llu client_data=%llu",
                     (unsigned long long)info->data,
                     (unsigned long long)rs_client_data(rs, client));
    return rs_send(rs, RS_TO_CUR, NULL, 0, RS_UTF8, msg, (size_t)n);
}

static int on_http(rs_t *rs, void *state, const struct rs_request *req) {
    (void)state;
    int bad[5];
    bad[0] = rs_respond(rs, req->request_id, 99, NULL, 0, "", 0);           /* bad status */
    bad[1] = rs_respond(rs, req->request_id, 200, "Content-Length: 1", 17, "", 0); /* reserved */
    bad[2] = rs_respond(rs, 12345, 200, NULL, 0, "", 0);                    /* unknown id */
    bad[3] = rs_accept(rs, req->request_id, 1);                             /* not an upgrade */
    bad[4] = rs_respond(rs, req->request_id, 200, "A: 1\nB: 2", 9, "", 0);  /* bare LF */
    char body[512];
    int n = snprintf(body, sizeof body, "%.*s %.*s %.*s | %d %d %d %d %d", (int)req->method_len,
                     req->method, (int)req->path_len, req->path, (int)req->body_len,
                     (const char *)req->body, bad[0], bad[1], bad[2], bad[3], bad[4]);
    return rs_respond(rs, req->request_id, 200, "X-C: 1", 6, body, (size_t)n);
}

static int on_control(rs_t *rs, void *state, int argc, const char *const *argv) {
    (void)state;
    char reply[256];
    int n = snprintf(reply, sizeof reply, "argc=%d ", argc);
    for (int i = 0; i < argc && n < (int)sizeof reply; i++) {
        n += snprintf(reply + n, sizeof reply - (size_t)n, "%s%s", i ? "|" : "", argv[i]);
    }
    if (n > (int)sizeof reply - 1) {
        n = (int)sizeof reply - 1;
    }
    if (rs_control_reply(rs, reply, (size_t)n) != RS_OK) {
        return 2;
    }
    return argc > 0 && !strcmp(argv[0], "fail") ? 3 : 0;
}

RS_APP(.name = "gate-c", .upgrade = on_upgrade, .open = on_open, .http = on_http,
       .control = on_control);

/* A test plugin (ABI v2) that calls every host function with wrong arguments when it
 * gets a message, and replies with what each returned: none may crash the server. */
#include <ringsocket.h>
#include <stdio.h>

static int on_read(rs_t *rs, void *state, uint64_t client, uint32_t kind, const uint8_t *data,
                   size_t len) {
    (void)state;
    (void)kind;
    (void)data;
    (void)len;
    const struct rs_host_api *api = RS_API(rs);
    int r[16];
    int n = 0;
    r[n++] = api->send(rs, RS_TO_CUR, NULL, 0, RS_BIN, NULL, 5);         /* NULL data */
    r[n++] = api->send(rs, RS_TO_CUR, NULL, 0, 7, "x", 1);               /* bad kind */
    r[n++] = api->send(rs, 99, NULL, 0, RS_BIN, "x", 1);                 /* bad target */
    r[n++] = api->send(rs, RS_TO_MULTI, NULL, 3, RS_BIN, "x", 1);        /* NULL ids */
    r[n++] = api->send(rs, RS_TO_SINGLE, &client, 2, RS_BIN, "x", 1);    /* 2 ids: single */
    r[n++] = api->send(rs, RS_TO_CUR, NULL, 0, RS_UTF8, "\xff", 1);      /* bad UTF-8 */
    r[n++] = api->close(rs, client, 1005, "", 0);                        /* reserved code */
    r[n++] = api->close(rs, 0, 4000, "", 0);                             /* client 0 */
    r[n++] = api->close(rs, client, 4000, NULL, 3);                      /* NULL reason */
    r[n++] = api->w_reserve(rs, (size_t)-1);                             /* too big */
    r[n++] = api->to(rs, RS_TO_CUR, NULL, 0, RS_BIN);                    /* after a failed write */
    RS_HEADER(rs)->w_len = 1000;                                          /* corrupted length */
    r[n++] = api->to(rs, RS_TO_CUR, NULL, 0, RS_BIN);
    r[n++] = api->client_info(rs, client, NULL);                         /* NULL out */
    struct rs_client_info info;
    r[n++] = api->client_info(rs, 12345, &info);                         /* unknown client */
    r[n++] = api->header(rs, NULL, 4, NULL) == NULL ? 0 : 1;             /* outside open */
    r[n++] = rs_event_handle(rs)->post(NULL, "x", 1);                     /* NULL handle */
    char reply[256];
    int at = 0;
    for (int i = 0; i < n; i++) {
        at += snprintf(reply + at, sizeof(reply) - (size_t)at, "%s%d", i ? " " : "", r[i]);
    }
    return rs_send(rs, RS_TO_CUR, NULL, 0, RS_UTF8, reply, (size_t)at);
}

RS_APP(.name = "bad-args", .read = on_read);

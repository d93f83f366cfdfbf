/* The echo app in C, built against the frozen ABI v1 header: every message goes back
 * to its sender, unchanged. It stays on v1 so that the tests keep a v1 plugin. */
#include <ringsocket.h>

static int echo_read(rs_t *rs, void *state, uint64_t client_id, uint32_t kind,
                     const uint8_t *data, size_t len) {
    (void)state;
    (void)client_id;
    return rs_to_cur(rs, kind, data, len);
}

RS_APP(.name = "echo-c", .read = echo_read);

/* The echo app in C: every message goes back to its sender, unchanged. */
#include <ringsocket.h>

static int echo_read(rs_t *rs, void *state, uint64_t client_id, uint32_t kind,
                     const uint8_t *data, size_t len) {
    (void)state;
    (void)client_id;
    return rs_to_cur(rs, kind, data, len);
}

RS_APP(.name = "echo-c", .read = echo_read);

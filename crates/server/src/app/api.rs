//! The host API table every plugin handle points at: the functions of `host.rs` (calls
//! on the context) and `writer.rs` (the in-place writer).

use super::host::{
    host_accept, host_client_data, host_client_info, host_close, host_conf, host_control_reply,
    host_current_client, host_event_handle, host_header, host_log, host_publish, host_respond,
    host_send, host_set_periodic, host_set_timer, host_subscribe, host_topic_count,
    host_unsubscribe,
};
use super::writer::{host_to, host_to_topic, host_w_reserve};
use ringsocket_abi as abi;

/// The API table every handle points at.
pub(crate) static HOST_API: abi::rs_host_api = abi::rs_host_api {
    size: std::mem::size_of::<abi::rs_host_api>() as u32,
    send: host_send,
    close: host_close,
    set_timer: host_set_timer,
    current_client: host_current_client,
    log: host_log,
    w_reserve: host_w_reserve,
    to: host_to,
    client_info: host_client_info,
    header: host_header,
    set_periodic: host_set_periodic,
    event_handle: host_event_handle,
    conf: host_conf,
    subscribe: host_subscribe,
    unsubscribe: host_unsubscribe,
    publish: host_publish,
    to_topic: host_to_topic,
    topic_count: host_topic_count,
    accept: host_accept,
    respond: host_respond,
    client_data: host_client_data,
    control_reply: host_control_reply,
};

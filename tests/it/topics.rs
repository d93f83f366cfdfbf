//! Topics (ABI v3) through the probe plugin: subscribers on both workers, exclusion,
//! counts, ends with the connection, ordering, a publish racing a leaving subscriber,
//! and the in-place writer to a topic.

use ringsocket_tests::*;
use serde_json::json;

/// Clients with their ids, connected until each worker owns at least `per_worker`.
fn clients_on_both_workers(s: &Server, per_worker: usize) -> Vec<(Client, u64)> {
    let mut by_worker: [Vec<(Client, u64)>; 2] = [Vec::new(), Vec::new()];
    for _ in 0..400 {
        if by_worker.iter().all(|w| w.len() >= per_worker) {
            break;
        }
        let mut ws = s.connect("/probe");
        let id: u64 = ask(&mut ws, "id").parse().unwrap();
        let w = &mut by_worker[(id & 0xff) as usize];
        if w.len() < per_worker {
            w.push((ws, id));
        }
    }
    assert!(
        by_worker.iter().all(|w| w.len() == per_worker),
        "the kernel never spread"
    );
    // Interleaved: 0 on worker 0, 1 on worker 1, ...
    let [a, b] = by_worker;
    a.into_iter().zip(b).flat_map(|(x, y)| [x, y]).collect()
}

/// `to` gets a marker from `from` next: nothing else reached it in between.
fn marker_next(clients: &mut [(Client, u64)], from: usize, to: usize) {
    let id = clients[to].1;
    cmd(&mut clients[from].0, &format!("to {id} marker"));
    assert_eq!(
        text(&mut clients[to].0),
        "marker",
        "client {to} got something else"
    );
}

#[test]
fn publishes_reach_exactly_the_subscribers_on_every_worker() {
    let s = Server::start(json!([probe(json!({}))]), json!({"worker_c": 2}));
    let mut c = clients_on_both_workers(&s, 3);
    // 0..4 subscribe to "red" (both workers), 4 and 5 to "blue".
    for (ws, _) in &mut c[..4] {
        assert_eq!(ask(ws, "sub red"), "ok");
    }
    for (ws, _) in &mut c[4..] {
        assert_eq!(ask(ws, "sub blue"), "ok");
    }
    assert_eq!(ask(&mut c[0].0, "sub red"), "ok", "again: no change");
    assert_eq!(ask(&mut c[5].0, "count red"), "count 4");
    assert_eq!(ask(&mut c[5].0, "count blue"), "count 2");
    assert_eq!(ask(&mut c[5].0, "count none"), "count 0");
    // From a non-subscriber: every red subscriber, nobody else.
    cmd(&mut c[5].0, "pub red hello red");
    for (ws, _) in &mut c[..4] {
        assert_eq!(text(ws), "hello red");
    }
    marker_next(&mut c, 0, 4);
    marker_next(&mut c, 0, 5);
    // Excluding the sender.
    cmd(&mut c[1].0, "pubx red from 1");
    for i in [0, 2, 3] {
        assert_eq!(text(&mut c[i].0), "from 1");
    }
    marker_next(&mut c, 0, 1);
    // Written in place.
    cmd(&mut c[4].0, "wpub blue written");
    assert_eq!(text(&mut c[4].0), "written");
    assert_eq!(text(&mut c[5].0), "written");
    // Unsubscribed: gets nothing more.
    assert_eq!(ask(&mut c[2].0, "unsub red"), "ok");
    assert_eq!(ask(&mut c[5].0, "count red"), "count 3");
    cmd(&mut c[5].0, "pub red again");
    for i in [0, 1, 3] {
        assert_eq!(text(&mut c[i].0), "again");
    }
    marker_next(&mut c, 0, 2);
    // Another client's subscription, and refusals.
    let id = c[2].1;
    assert_eq!(ask(&mut c[0].0, &format!("subid {id} blue")), "ok");
    assert_eq!(ask(&mut c[0].0, "subid 999999 blue"), "NotFound");
    assert_eq!(
        ask(&mut c[0].0, &format!("sub {}", "x".repeat(256))),
        "Invalid"
    );
    cmd(&mut c[0].0, "pub blue third");
    for i in [2, 4, 5] {
        assert_eq!(text(&mut c[i].0), "third");
    }
}

#[test]
fn subscriptions_end_with_the_connection() {
    let s = Server::start(json!([probe(json!({}))]), json!({"worker_c": 2}));
    let mut c = clients_on_both_workers(&s, 2);
    for (ws, _) in c.iter_mut() {
        assert_eq!(ask(ws, "sub t"), "ok");
    }
    let (gone, _) = c.remove(1);
    drop(gone);
    // Counted out once the app has handled the close.
    poll_until("the leaver is counted out", || {
        ask(&mut c[0].0, "count t") == "count 3"
    });
    cmd(&mut c[0].0, "pub t after");
    for (ws, _) in c.iter_mut() {
        assert_eq!(text(ws), "after");
    }
}

/// Publishes from one app arrive in publish order at every subscriber, and a subscriber
/// leaving while publishes are in flight disturbs nobody else.
#[test]
fn order_is_kept_and_a_leaver_mid_stream_disturbs_nobody() {
    let s = Server::start(json!([probe(json!({}))]), json!({"worker_c": 2}));
    let mut c = clients_on_both_workers(&s, 3);
    for (ws, _) in c.iter_mut() {
        assert_eq!(ask(ws, "sub s"), "ok");
    }
    let (mut leaver, _) = c.remove(3);
    let n = 2000;
    cmd(&mut c[0].0, &format!("pubn s {n}"));
    // The leaver reads a few and then vanishes while the rest are in flight.
    for i in 0..5 {
        assert_eq!(text(&mut leaver), format!("seq {i}"));
    }
    drop(leaver);
    for (ws, _) in c.iter_mut() {
        for i in 0..n {
            assert_eq!(text(ws), format!("seq {i}"));
        }
    }
    // And after it: the topic still works for the others.
    cmd(&mut c[1].0, "pubx s done");
    for i in [0, 2, 3, 4] {
        assert_eq!(text(&mut c[i].0), "done");
    }
}

/// 100 000 topics cost memory in proportion to subscriptions (here one subscriber each),
/// and all of it goes with the subscriber.
#[test]
fn a_hundred_thousand_topics_cost_memory_in_proportion() {
    let s = Server::start(json!([probe(json!({}))]), json!({"worker_c": 2}));
    let mut a = s.connect("/probe");
    let mut b = s.connect("/probe");
    assert!(!ask(&mut b, "id").is_empty());
    let before = s.rss();
    assert_eq!(ask(&mut a, "subn topic- 100000"), "ok");
    let grown = s.rss().saturating_sub(before);
    assert_eq!(ask(&mut b, "count topic-99999"), "count 1");
    eprintln!(
        "100 000 subscriptions: {grown} bytes of RSS ({} per subscription)",
        grown / 100_000
    );
    assert!(grown < 40 << 20, "{grown} bytes for 100 000 subscriptions");
    cmd(&mut b, "pub topic-4242 one of many");
    assert_eq!(text(&mut a), "one of many");
    drop(a);
    poll_until("the subscriptions end with the client", || {
        ask(&mut b, "count topic-4242") == "count 0"
    });
}

//! The shard's pipelined lookups under load and when Redis goes quiet: lookups of one key
//! queued for the same write share one GET and each gets the right answer; a lookup whose
//! reply does not come within `lookup_timeout_ms` fails with UNAVAILABLE, and the replies that
//! come late are matched to nobody else's call.
//!
//! Real redis-server, tonic upstreams and ringway (one shard, so every lookup shares one
//! connection), over loopback.

use std::time::Duration;

use ringway_testkit::futures_util::future::join_all;
use ringway_testkit::tonic::Code;
use ringway_testkit::{routed, run, within, EchoRequest, Env};

const RINGWAY: &str = env!("CARGO_BIN_EXE_ringway");
const LIMIT: Duration = Duration::from_secs(60);
const ANSWER_WITHIN: Duration = Duration::from_secs(10);
const KEYS: [(&str, Option<&str>); 3] =
    [("job-a", Some("a")), ("job-b", Some("b")), ("gone", None)];

/// Sends `rounds` × 3 unary calls at once over `connections` connections, the three keys in
/// turn; checks each reached the upstream its key names (or NOT_FOUND for the missing key).
async fn mixed_calls_each_get_their_own_answer(env: &Env, connections: usize, rounds: usize) {
    let mut clients = Vec::new();
    for _ in 0..connections {
        clients.push(env.client().await);
    }
    let calls = (0..rounds * KEYS.len()).map(|i| {
        let mut client = clients[i % connections].clone();
        let (key, want) = KEYS[i % KEYS.len()];
        async move {
            let reply = client.unary(routed(EchoRequest::default(), key)).await;
            (i, key, want, reply)
        }
    });
    let replies = within(ANSWER_WITHIN, "the mixed calls", join_all(calls)).await;
    for (i, key, want, reply) in replies {
        match (want, reply) {
            (Some(name), Ok(reply)) => {
                assert_eq!(reply.get_ref().upstream, name, "call {i} with {key}")
            }
            (None, Err(status)) => {
                assert_eq!(
                    status.code(),
                    Code::NotFound,
                    "call {i} with {key}: {status:?}"
                )
            }
            (want, reply) => panic!("call {i} with {key}: wanted {want:?}, got {reply:?}"),
        }
    }
}

fn env_builder() -> ringway_testkit::EnvBuilder {
    Env::builder(RINGWAY)
        .shards(1)
        .upstream("a")
        .upstream("b")
        .route("job-a", "a")
        .route("job-b", "b")
}

/// Many calls of a few keys in flight at once: lookups of one key made in the same turn share
/// one GET (counted), and every call still gets the answer for its own key.
#[test]
fn lookups_of_one_key_share_a_get_and_each_call_gets_its_own_answer() {
    run(LIMIT, async {
        let env = env_builder().start().await;
        mixed_calls_each_get_their_own_answer(&env, 4, 200).await;
        let lookups = env.metric("ringway_redis_lookups_total", &[]);
        let shared = env.metric("ringway_redis_lookups_shared_total", &[]);
        let commands = env.metric("ringway_redis_commands_total", &[]);
        assert_eq!(lookups, 600.0, "one lookup per call");
        assert!(
            shared > 0.0,
            "600 calls of 3 keys at once: some share a GET"
        );
        // Every lookup is either sent (a GET) or shared.
        assert_eq!(
            commands + shared,
            lookups,
            "commands {commands}, shared {shared}"
        );
    });
}

/// Redis pauses every client for longer than the lookup timeout: the calls waiting on it fail
/// with UNAVAILABLE (the lookup timed out, or the connection was declared stalled and
/// redialed), none hangs; after the pause every key again gets its own answer, so the replies
/// that came late went to no other call.
#[test]
fn lookups_redis_holds_past_the_timeout_fail_and_late_replies_go_nowhere() {
    run(LIMIT, async {
        let env = env_builder()
            .config("[redis]\nlookup_timeout_ms = 300\n")
            .start()
            .await;
        mixed_calls_each_get_their_own_answer(&env, 2, 10).await;

        let paused = env.redis().command(&[b"CLIENT", b"PAUSE", b"1500", b"ALL"]);
        assert_eq!(format!("{paused:?}"), "Status(\"OK\")", "CLIENT PAUSE");
        let client = env.client().await;
        let held = (0..30).map(|i| {
            let mut client = client.clone();
            let (key, _) = KEYS[i % KEYS.len()];
            async move { client.unary(routed(EchoRequest::default(), key)).await }
        });
        let held = within(ANSWER_WITHIN, "calls while Redis is paused", join_all(held)).await;
        for (i, reply) in held.into_iter().enumerate() {
            let status = reply.expect_err("Redis is paused: the lookup cannot be answered");
            assert_eq!(status.code(), Code::Unavailable, "call {i}: {status:?}");
            let message = status.message();
            assert!(
                message.contains("timed out after 300 ms") || message.contains("no reply for"),
                "call {i} says why: {message}"
            );
        }
        assert!(
            env.metric("ringway_redis_timeouts_total", &[])
                + env.metric("ringway_redis_errors_total", &[])
                >= 30.0,
            "each failed lookup is counted"
        );

        // After the pause: every key answers for itself again.
        ringway_testkit::eventually(ANSWER_WITHIN, "a call routed after the pause", || {
            let mut client = client.clone();
            async move { client.unary(routed(EchoRequest::default(), "job-a")).await }
        })
        .await;
        mixed_calls_each_get_their_own_answer(&env, 2, 50).await;
    });
}

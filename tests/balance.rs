//! Client connections spread across shards (`downstream.balance`): a few long-lived clients
//! on two shards are served half and half, however the kernel's `SO_REUSEPORT` hash placed
//! them; with `balance = "kernel"` nothing is handed over.

use std::time::Duration;

use ringway_testkit::{connect, routed, run, EchoRequest, Env};

const RINGWAY: &str = env!("CARGO_BIN_EXE_ringway");
const LIMIT: Duration = Duration::from_secs(120);

/// Opens `connections` clients one after another (each makes a call, so ringway has accepted
/// it before the next connects), then makes `calls` calls spread evenly over them; returns
/// the clients, still connected.
async fn calls_over(
    env: &Env,
    connections: usize,
    calls: usize,
) -> Vec<ringway_testkit::EchoClient<ringway_testkit::tonic::transport::Channel>> {
    let mut clients = Vec::new();
    for i in 0..connections {
        let mut client = connect(env.addr()).await;
        client
            .unary(routed(EchoRequest::default(), "job"))
            .await
            .unwrap_or_else(|s| panic!("connection {i}: {s:?}"));
        clients.push(client);
    }
    for i in 0..calls {
        clients[i % connections]
            .unary(routed(EchoRequest::default(), "job"))
            .await
            .unwrap_or_else(|s| panic!("call {i}: {s:?}"));
    }
    clients
}

#[test]
fn four_clients_on_two_shards_are_served_half_and_half() {
    run(LIMIT, async {
        let env = Env::builder(RINGWAY)
            .shards(2)
            .upstream("up")
            .route("job", "up")
            .start()
            .await;
        let _clients = calls_over(&env, 4, 400).await;
        let text = env.metrics();
        let per_shard = |name: &str, shard: &str| {
            ringway_testkit::admin::metric_sum(&text, name, &[("shard", shard)])
        };
        let accepted =
            ["0", "1"].map(|s| per_shard("ringway_downstream_connections_accepted_total", s));
        let calls = ["0", "1"].map(|s| per_shard("ringway_calls_total", s));
        let handed =
            ["0", "1"].map(|s| per_shard("ringway_downstream_connections_handed_off_total", s));
        eprintln!("accepted {accepted:?}, calls {calls:?}, handed off {handed:?}");
        assert_eq!(
            accepted,
            [2.0, 2.0],
            "each shard serves two of the four connections"
        );
        let total = calls[0] + calls[1];
        assert_eq!(total, 404.0);
        for (shard, n) in calls.iter().enumerate() {
            assert!(
                *n <= 0.6 * total,
                "shard {shard} served {n} of {total} calls, more than 60%"
            );
        }
        assert_eq!(
            env.metric("ringway_downstream_connections", &[]),
            4.0,
            "handed-over connections are open on their new shard"
        );
    });
}

#[test]
fn balance_kernel_hands_nothing_over() {
    run(LIMIT, async {
        let env = Env::builder(RINGWAY)
            .shards(2)
            .upstream("up")
            .route("job", "up")
            .config("[downstream]\nbalance = \"kernel\"\n")
            .start()
            .await;
        calls_over(&env, 8, 16).await;
        assert_eq!(
            env.metric("ringway_downstream_connections_handed_off_total", &[]),
            0.0
        );
        assert_eq!(
            env.metric("ringway_downstream_connections_accepted_total", &[]),
            8.0
        );
    });
}

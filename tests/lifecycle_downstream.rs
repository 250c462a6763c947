//! The life of a client connection, with real clients: keepalive PINGs and their timeout, the
//! idle and age GOAWAYs, ping enforcement, the connection cap, descriptors and sockets after
//! many connections, and a restart on the same port.
//!
//! Clients that must misbehave (never answer a PING, flood PINGs) speak raw frames
//! ([`RawConn`]); the others are tonic, or the `h2` crate with a tap on the socket that records
//! the GOAWAY frames and the close it cannot report itself.

use std::io;
use std::time::{Duration, Instant};

use ringway_testkit::futures_util::future::join_all;
use ringway_testkit::prost::Message;
use ringway_testkit::rawh2::{
    grpc_messages, tapped_h2_client, Frame, RawConn, ENHANCE_YOUR_CALM, NO_ERROR, PING,
};
use ringway_testkit::{
    connect, eventually, grpc_call_on, raw_grpc_call, routed, run, tokio_sleep, within,
    EchoRequest, Env, Gateway,
};

const RINGWAY: &str = env!("CARGO_BIN_EXE_ringway");
const LIMIT: Duration = Duration::from_secs(60);
const UNARY: &str = "/echo.Echo/Unary";
const SERVER_STREAM: &str = "/echo.Echo/ServerStream";

/// The value of `name` summed over its series (all shards).
fn metric(gateway: &Gateway, name: &str) -> f64 {
    gateway.metric(name, &[])
}

/// Starts Redis, one upstream, `up`, routed by `job`, and ringway on `shards` shards with
/// `toml` as its config file.
async fn setup(toml: &str, shards: usize) -> Env {
    Env::builder(RINGWAY)
        .shards(shards)
        .upstream("up")
        .route("job", "up")
        .config(toml)
        .start()
        .await
}

fn echo_message(request: EchoRequest) -> Vec<u8> {
    request.encode_to_vec()
}

/// Reads frames until the peer closes the connection (EOF or reset) or `deadline` passes.
/// Returns the frames read and whether it closed.
async fn read_until_closed(conn: &mut RawConn, deadline: Instant) -> (Vec<Frame>, bool) {
    let mut frames = Vec::new();
    loop {
        match conn.read_frame_until(deadline).await {
            Ok(Some(frame)) => frames.push(frame),
            Ok(None) => return (frames, true),
            Err(e) if e.kind() == io::ErrorKind::TimedOut => return (frames, false),
            // Reset, or closed inside a frame: closed all the same.
            Err(_) => return (frames, true),
        }
    }
}

/// Keepalive 300 + 300 ms: a client that completed the handshake and then never answers gets a
/// PING, and is closed soon after its timeout.
#[test]
fn keepalive_closes_a_client_that_never_answers_pings() {
    run(LIMIT, async {
        let toml = "[downstream]\nkeepalive_time_ms = 300\nkeepalive_timeout_ms = 300\n";
        let env = setup(toml, 1).await;
        let gateway = env.gateway();
        let (mut conn, _) = RawConn::client_handshake(gateway.addr(), Duration::from_secs(5))
            .await
            .expect("HTTP/2 handshake with ringway");
        let opened = Instant::now();
        let mut pinged = None;
        let deadline = opened + Duration::from_secs(3);
        let closed = loop {
            match conn.read_frame_until(deadline).await {
                Ok(Some(frame)) if frame.kind == PING && !frame.is_ack() => {
                    pinged.get_or_insert(opened.elapsed());
                }
                Ok(Some(_)) => {}
                Ok(None) => break opened.elapsed(),
                Err(e) if e.kind() == io::ErrorKind::TimedOut => panic!(
                    "the connection is still open 3 s after the handshake (PING at {pinged:?}); \
                     ringway stderr:\n{}",
                    gateway.stderr()
                ),
                Err(_) => break opened.elapsed(),
            }
        };
        let pinged = pinged.unwrap_or_else(|| panic!("closed after {closed:?} without a PING"));
        eprintln!("PING after {pinged:?}, closed after {closed:?}");
        assert!(
            closed >= pinged + Duration::from_millis(250),
            "closed {closed:?} before the 300 ms PING timeout from {pinged:?} ran out"
        );
        let timeouts = metric(gateway, "ringway_downstream_keepalive_timeouts_total");
        assert!(timeouts >= 1.0, "keepalive timeouts: {timeouts}");
    });
}

/// The same settings with a client that answers PINGs (tonic): 2 s idle, and the connection is
/// still the one it opened.
#[test]
fn keepalive_keeps_a_client_that_answers_pings() {
    run(LIMIT, async {
        let toml = "[downstream]\nkeepalive_time_ms = 300\nkeepalive_timeout_ms = 300\n";
        let env = setup(toml, 1).await;
        let gateway = env.gateway();
        let mut client = env.client().await;
        client
            .unary(routed(EchoRequest::default(), "job"))
            .await
            .expect("a call before the idle time");
        tokio_sleep(Duration::from_secs(2)).await;
        let reply = client.unary(routed(EchoRequest::default(), "job")).await;
        reply.expect("a call on the same channel after 2 s idle");
        assert_eq!(
            metric(gateway, "ringway_downstream_connections_accepted_total"),
            1.0,
            "the channel kept its one connection"
        );
        assert_eq!(metric(gateway, "ringway_downstream_connections"), 1.0);
        assert_eq!(
            metric(gateway, "ringway_downstream_keepalive_timeouts_total"),
            0.0
        );
    });
}

/// `max_connection_idle_ms = 300`: after a call, the connection gets GOAWAY NO_ERROR, and
/// (the client answering the drain PING) is closed.
#[test]
fn idle_connection_gets_goaway_no_error() {
    run(LIMIT, async {
        let toml = "[downstream]\nmax_connection_idle_ms = 300\n";
        let env = setup(toml, 1).await;
        let gateway = env.gateway();
        let (send, tap, _driver) = tapped_h2_client(gateway.addr()).await.expect("connect");
        let message = echo_message(EchoRequest::default());
        let response = grpc_call_on(
            send.clone(),
            gateway.addr(),
            UNARY,
            &[("jobid", "job")],
            &message,
        )
        .await
        .expect("a call");
        assert_eq!(response.grpc_status(), Some("0"), "{response:?}");
        let call_ended = Instant::now();
        assert!(tap.goaways().is_empty(), "GOAWAY during the call");
        let (at, goaway) = tap
            .wait_goaway(Duration::from_secs(3))
            .await
            .expect("a GOAWAY within 3 s of the call's end");
        let after = at - call_ended;
        eprintln!("GOAWAY {goaway:?} {after:?} after the call");
        assert_eq!(goaway.code, NO_ERROR, "{goaway:?}");
        assert!(
            after >= Duration::from_millis(200) && after <= Duration::from_secs(2),
            "GOAWAY {after:?} after the call; max_connection_idle is 300 ms"
        );
        // Once the drain PING is answered (h2 does), the connection ends: ringway closes it,
        // or the h2 client does on seeing the final GOAWAY with nothing left to do.
        let (ended, by_ringway) =
            tap.wait_ended(Duration::from_secs(3))
                .await
                .unwrap_or_else(|| {
                    panic!(
                        "GOAWAY'd idle connection still open 3 s later; GOAWAYs: {:?}",
                        tap.goaways()
                    )
                });
        eprintln!(
            "connection ended {:?} after the first GOAWAY, closed by {}; GOAWAYs: {:?}",
            ended - at,
            if by_ringway { "ringway" } else { "the client" },
            tap.goaways()
        );
        drop(send);
    });
}

/// `max_connection_age_ms = 500`, grace 500: a server-stream call far longer than that is cut:
/// GOAWAY at about 500 ms, the connection closed about 500 ms later though the stream is open.
#[test]
fn max_age_closes_after_the_grace_even_with_a_stream_open() {
    run(LIMIT, async {
        let toml = "[downstream]\nmax_connection_age_ms = 500\nmax_connection_age_grace_ms = 500\n";
        let env = setup(toml, 1).await;
        let gateway = env.gateway();
        let opened = Instant::now();
        let (send, tap, _driver) = tapped_h2_client(gateway.addr()).await.expect("connect");
        // 100 replies 50 ms apart: 5 s, ten times age + grace.
        let message = echo_message(EchoRequest {
            reply_count: 100,
            delay_ms: 50,
            ..Default::default()
        });
        let (task_send, addr) = (send.clone(), gateway.addr());
        let call = ringway_testkit::tokio::spawn(async move {
            grpc_call_on(
                task_send,
                addr,
                SERVER_STREAM,
                &[("jobid", "job")],
                &message,
            )
            .await
        });
        let closed = tap
            .wait_closed(Duration::from_secs(4))
            .await
            .unwrap_or_else(|| {
                panic!(
                    "connection still open 4 s after it opened (age 500 + grace 500); GOAWAYs: {:?}",
                    tap.goaways()
                )
            });
        let goaways = tap.goaways();
        let (goaway_at, goaway) = goaways.first().cloned().expect("a GOAWAY before the close");
        eprintln!(
            "GOAWAY {goaway:?} at {:?}, closed at {:?}",
            goaway_at - opened,
            closed - opened
        );
        assert_eq!(goaway.code, NO_ERROR);
        assert!(
            goaway_at - opened >= Duration::from_millis(400),
            "GOAWAY at {:?}, before the age (500 ms - 10%)",
            goaway_at - opened
        );
        assert!(
            closed - goaway_at >= Duration::from_millis(400),
            "closed {:?} after the GOAWAY: the 500 ms grace was not given",
            closed - goaway_at
        );
        assert!(
            closed - opened <= Duration::from_millis(2_600),
            "closed at {:?}; age 550 + grace 500 + slack is 2.6 s",
            closed - opened
        );
        let result = within(Duration::from_secs(5), "the cut call ends", call)
            .await
            .expect("the call task");
        match result {
            Ok(response) => assert_ne!(
                response.grpc_status(),
                Some("0"),
                "a 5 s stream cannot have completed: {} bytes",
                response.body.len()
            ),
            Err(e) => eprintln!("the open call failed as expected: {e}"),
        }
    });
}

/// Grace 0 means unlimited: a call longer than the age gets the GOAWAY and still completes.
#[test]
fn max_age_without_grace_lets_the_call_finish() {
    run(LIMIT, async {
        let toml = "[downstream]\nmax_connection_age_ms = 300\nmax_connection_age_grace_ms = 0\n";
        let env = setup(toml, 1).await;
        let gateway = env.gateway();
        let (send, tap, _driver) = tapped_h2_client(gateway.addr()).await.expect("connect");
        // 10 replies 100 ms apart: about 1 s, three times the age.
        let message = echo_message(EchoRequest {
            reply_count: 10,
            delay_ms: 100,
            ..Default::default()
        });
        let response = within(
            Duration::from_secs(10),
            "a server stream across the age GOAWAY",
            grpc_call_on(
                send.clone(),
                gateway.addr(),
                SERVER_STREAM,
                &[("jobid", "job")],
                &message,
            ),
        )
        .await
        .expect("the call completes");
        let ended = Instant::now();
        assert_eq!(response.grpc_status(), Some("0"), "{response:?}");
        let (messages, partial) = grpc_messages(&response.body);
        assert_eq!((messages.len(), partial), (10, 0), "every reply arrived");
        let goaways = tap.goaways();
        assert!(
            goaways.first().is_some_and(|(at, _)| *at < ended),
            "the age GOAWAY came during the call: {goaways:?}"
        );
    });
}

/// Four PINGs back to back with no call open (default enforcement): GOAWAY
/// ENHANCE_YOUR_CALM with the debug data `too_many_pings`, then the close.
#[test]
fn ping_flood_gets_enhance_your_calm_too_many_pings() {
    run(LIMIT, async {
        let env = setup("", 1).await;
        let gateway = env.gateway();
        let (mut conn, _) = RawConn::client_handshake(gateway.addr(), Duration::from_secs(5))
            .await
            .expect("handshake");
        for i in 0..4u8 {
            conn.write_frame(&Frame::ping([i; 8]))
                .await
                .expect("send a PING");
        }
        let (frames, closed) =
            read_until_closed(&mut conn, Instant::now() + Duration::from_secs(3)).await;
        let goaway = frames
            .iter()
            .find_map(Frame::as_goaway)
            .unwrap_or_else(|| panic!("no GOAWAY; frames: {frames:?}"));
        assert_eq!(
            goaway.code, ENHANCE_YOUR_CALM,
            "GOAWAY error code: {goaway:?}"
        );
        assert_eq!(
            String::from_utf8_lossy(&goaway.debug),
            "too_many_pings",
            "GOAWAY debug data"
        );
        assert!(closed, "the connection stays open after the GOAWAY");
        let n = metric(gateway, "ringway_downstream_too_many_pings_total");
        assert!(n >= 1.0, "too_many_pings: {n}");
    });
}

/// A client pinging every 300 ms when 100 ms is permitted, without calls (permitted too), is
/// not punished over 2 s.
#[test]
fn permitted_pings_are_not_punished() {
    run(LIMIT, async {
        let toml = "[downstream]\npermit_keepalive_time_ms = 100\n\
                    permit_keepalive_without_calls = true\n";
        let env = setup(toml, 1).await;
        let gateway = env.gateway();
        let (mut conn, _) = RawConn::client_handshake(gateway.addr(), Duration::from_secs(5))
            .await
            .expect("handshake");
        let start = Instant::now();
        let (mut sent, mut acks) = (0u8, 0);
        while start.elapsed() < Duration::from_secs(2) {
            conn.write_frame(&Frame::ping([sent; 8]))
                .await
                .unwrap_or_else(|e| panic!("PING {sent} after {:?}: {e}", start.elapsed()));
            sent += 1;
            let next = Instant::now() + Duration::from_millis(300);
            let (frames, closed) = read_until_closed(&mut conn, next).await;
            for frame in &frames {
                if let Some(goaway) = frame.as_goaway() {
                    panic!("GOAWAY after {:?}: {goaway:?}", start.elapsed());
                }
                acks += usize::from(frame.kind == PING && frame.is_ack());
            }
            assert!(!closed, "closed after {:?}", start.elapsed());
        }
        assert!(sent >= 6, "pinged {sent} times");
        assert_eq!(acks, usize::from(sent), "every PING was acknowledged");
        assert_eq!(
            metric(gateway, "ringway_downstream_too_many_pings_total"),
            0.0
        );
    });
}

/// `max_connections = 4` on one shard: four connections with a call each, a fifth is closed at
/// once and counted; once the four are gone, new connections work again.
#[test]
fn connection_cap_refuses_the_fifth_and_recovers() {
    run(LIMIT, async {
        let toml = "[downstream]\nmax_connections = 4\n";
        let env = setup(toml, 1).await;
        let gateway = env.gateway();
        let mut clients = Vec::new();
        for i in 0..4 {
            let mut client = env.client().await;
            client
                .unary(routed(EchoRequest::default(), "job"))
                .await
                .unwrap_or_else(|s| panic!("call on connection {i}: {s:?}"));
            clients.push(client);
        }
        let fifth = RawConn::client_handshake(gateway.addr(), Duration::from_secs(3)).await;
        match fifth {
            Ok((_, frames)) => panic!(
                "the fifth connection completed its handshake: {frames:?}; connections: {}",
                metric(gateway, "ringway_downstream_connections")
            ),
            Err(e) => eprintln!("fifth connection: {e}"),
        }
        let refused = metric(gateway, "ringway_downstream_connections_refused_total");
        assert!(refused >= 1.0, "refused: {refused}");

        drop(clients);
        eventually(
            Duration::from_secs(5),
            "the four connections are gone",
            || async {
                match metric(gateway, "ringway_downstream_connections") {
                    0.0 => Ok(()),
                    n => Err(n),
                }
            },
        )
        .await;
        let mut client = env.client().await;
        client
            .unary(routed(EchoRequest::default(), "job"))
            .await
            .expect("a call on a new connection once below the cap");
    });
}

/// Descriptors the gateway process holds.
fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("read the gateway's /proc/<pid>/fd")
        .count()
}

/// Sockets in `/proc/net/tcp` whose local port is `port`, in hex `state` (08 = CLOSE_WAIT,
/// 06 = TIME_WAIT).
fn sockets_on_port(port: u16, state: &str) -> usize {
    let table = std::fs::read_to_string("/proc/net/tcp").expect("read /proc/net/tcp");
    table
        .lines()
        .skip(1)
        .filter(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let local_port = fields
                .get(1)
                .and_then(|a| a.rsplit_once(':'))
                .and_then(|(_, p)| u16::from_str_radix(p, 16).ok());
            local_port == Some(port) && fields.get(3) == Some(&state)
        })
        .count()
}

/// 1000 client connections, each with one call, 50 at a time: afterwards the gateway holds as
/// many descriptors as before (±2) and no socket of its port is left in CLOSE_WAIT.
#[test]
fn a_thousand_connections_leave_no_descriptors_or_close_wait() {
    run(Duration::from_secs(120), async {
        let env = setup("", 2).await;
        let gateway = env.gateway();
        let addr = gateway.addr();
        let message = echo_message(EchoRequest::default());
        let call = |message: Vec<u8>| async move {
            let response = raw_grpc_call(addr, UNARY, &[("jobid", "job")], &message)
                .await
                .map_err(|e| e.to_string())?;
            match response.grpc_status() {
                Some("0") => Ok(()),
                other => Err(format!("grpc-status {other:?}: {response:?}")),
            }
        };
        // Warm up: both shards dial their upstream connection and reach Redis.
        for _ in 0..20 {
            call(message.clone()).await.expect("a warm-up call");
        }
        tokio_sleep(Duration::from_millis(500)).await;
        let baseline = fd_count(gateway.pid());
        let started = Instant::now();
        for batch in 0..20 {
            let results = join_all((0..50).map(|_| call(message.clone()))).await;
            for (i, result) in results.into_iter().enumerate() {
                result.unwrap_or_else(|e| panic!("batch {batch} call {i}: {e}"));
            }
        }
        eprintln!("1000 connections in {:?}", started.elapsed());
        let port = addr.port();
        let (fds, close_wait) = eventually(
            Duration::from_secs(5),
            "descriptors back to the baseline and no CLOSE_WAIT",
            || async {
                let (fds, close_wait) = (fd_count(gateway.pid()), sockets_on_port(port, "08"));
                if fds.abs_diff(baseline) <= 2 && close_wait == 0 {
                    Ok((fds, close_wait))
                } else {
                    Err(format!(
                        "fds {fds} (baseline {baseline}), CLOSE_WAIT on :{port}: {close_wait}"
                    ))
                }
            },
        )
        .await;
        eprintln!(
            "fds {fds} (baseline {baseline}); CLOSE_WAIT {close_wait}; TIME_WAIT on :{port}: {}",
            sockets_on_port(port, "06")
        );
    });
}

/// Stopped by SIGTERM, a new ringway binds the same port at once — while a connection the old
/// one closed sits in TIME_WAIT — and serves.
#[test]
fn a_restart_binds_the_same_port_at_once() {
    run(LIMIT, async {
        let mut env = Env::builder(RINGWAY)
            .shards(2)
            .upstream("up")
            .route("job", "up")
            .start()
            .await;
        let port = env.addr().port();
        let mut clients = Vec::new();
        for _ in 0..4 {
            let mut client = env.client().await;
            client
                .unary(routed(EchoRequest::default(), "job"))
                .await
                .expect("a call before the restart");
            clients.push(client);
        }
        // A connection ringway itself closes (a ping flood) leaves ringway's side of it in
        // TIME_WAIT on the service port: the case SO_REUSEADDR is there for.
        let (mut flood, _) = RawConn::client_handshake(env.addr(), Duration::from_secs(5))
            .await
            .expect("handshake");
        for i in 0..4u8 {
            flood.write_frame(&Frame::ping([i; 8])).await.expect("PING");
        }
        let (_, closed) =
            read_until_closed(&mut flood, Instant::now() + Duration::from_secs(3)).await;
        assert!(closed, "ringway did not close the ping flood");
        drop(flood);
        let status = env.gateway_mut().stop();
        assert!(status.success(), "first ringway exited with {status}");
        let time_wait = sockets_on_port(port, "06");
        eprintln!("after stop: TIME_WAIT on :{port}: {time_wait}");
        assert!(time_wait >= 1, "no TIME_WAIT left on :{port} to bind past");
        let started = Instant::now();
        let listen = format!("127.0.0.1:{port}");
        let second = Gateway::start_with(RINGWAY, &listen, env.redis().addr(), &["--shards", "2"]);
        eprintln!("second ringway listening after {:?}", started.elapsed());
        assert_eq!(second.addr().port(), port);
        let mut client = connect(second.addr()).await;
        let reply = client
            .unary(routed(EchoRequest::default(), "job"))
            .await
            .expect("a call through the restarted ringway");
        assert_eq!(reply.get_ref().upstream, "up");
        drop(clients);
    });
}

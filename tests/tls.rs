//! TLS on both hops, with real parts only: tonic TLS clients and tonic TLS targets, certificates
//! made at run time by the testkit's [`Pki`], ringway's TLS port beside its plaintext one.
//!
//! What is checked: all four RPC kinds with metadata, trailers and 4 MiB messages from a TLS
//! client to TLS and plaintext targets, and the same with mTLS on both hops; the client
//! identity forwarded and a spoofed one stripped; refusals (http/1.1-only ALPN, no client
//! certificate, a target whose certificate does not verify, bad files at start, a stalled
//! handshake, plaintext on the TLS port and TLS on the plaintext port), each counted; reload
//! with a new certificate; session resumption on both hops.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use ringway_testkit::futures_util::stream;
use ringway_testkit::pki::{self, PemFiles};
use ringway_testkit::rustls::pki_types::pem::PemObject;
use ringway_testkit::rustls::pki_types::{CertificateDer, ServerName};
use ringway_testkit::tokio::io::{AsyncReadExt, AsyncWriteExt};
use ringway_testkit::tokio_rustls::TlsConnector;
use ringway_testkit::tonic::metadata::MetadataMap;
use ringway_testkit::tonic::transport::Channel;
use ringway_testkit::tonic::{Code, Request};
use ringway_testkit::{
    eventually, pattern, routed, run, rustls, tokio, with_jobid, EchoClient, EchoRequest, Env,
    EnvBuilder, Pem, Pki, TempPath, UpstreamOptions, UpstreamTls,
};

const RINGWAY: &str = env!("CARGO_BIN_EXE_ringway");
const LIMIT: Duration = Duration::from_secs(90);
/// A little over the 4 MiB the contract promises.
const BIG: usize = 4 * 1024 * 1024 + 1024;
/// The identity header of the mTLS tests; `x-echo-*`, so the upstream sends it back.
const IDENTITY: &str = "x-echo-client-identity";

/// The gateway's TLS files: its certificate and key, and the CA for `--upstream-ca`.
struct GatewayFiles {
    server: PemFiles,
    upstream_ca: TempPath,
}

fn gateway_files(pki: &Pki) -> GatewayFiles {
    GatewayFiles {
        server: Pki::write(&pki.server(), "gateway"),
        upstream_ca: pki.write_ca("upstream"),
    }
}

/// Ringway with a TLS listener on port 0 with `files`, trusting `files.upstream_ca` for targets.
fn tls_gateway(files: &GatewayFiles) -> EnvBuilder {
    Env::builder(RINGWAY).args(&[
        "--tls-listen",
        "127.0.0.1:0",
        "--tls-cert",
        files.server.cert(),
        "--tls-key",
        files.server.key(),
        "--upstream-ca",
        files.upstream_ca.as_str(),
    ])
}

fn trailer<'a>(metadata: &'a MetadataMap, name: &str) -> Option<&'a str> {
    metadata.get(name).and_then(|v| v.to_str().ok())
}

/// All four RPC kinds through `client` to the upstream `name` routed by `key`: metadata
/// (an `x-echo-*` header comes back), trailers (`x-upstream`), and a 4 MiB message each way.
async fn all_kinds(client: &mut EchoClient<Channel>, key: &str, name: &str) {
    // Unary, with metadata, and a 4 MiB message.
    let mut request = routed(
        EchoRequest {
            payload: pattern(BIG, 1),
            ..Default::default()
        },
        key,
    );
    request
        .metadata_mut()
        .insert("x-echo-kind", "unary".parse().unwrap());
    let reply = client.unary(request).await.expect("unary");
    assert_eq!(trailer(reply.metadata(), "x-echo-kind"), Some("unary"));
    assert_eq!(trailer(reply.metadata(), "x-upstream"), Some(name));
    assert_eq!(reply.get_ref().upstream, name);
    assert!(reply.get_ref().payload == pattern(BIG, 1), "4 MiB echoed");

    // Server streaming, with trailers.
    let response = client
        .server_stream(routed(
            EchoRequest {
                reply_count: 5,
                payload: b"s".to_vec(),
                ..Default::default()
            },
            key,
        ))
        .await
        .expect("server stream");
    let mut inbound = response.into_inner();
    let mut replies = 0;
    while let Some(reply) = inbound.message().await.expect("a server stream message") {
        assert_eq!(reply.seq, replies);
        replies += 1;
    }
    assert_eq!(replies, 5);
    let trailers = inbound.trailers().await.expect("trailers").expect("some");
    assert_eq!(trailer(&trailers, "x-upstream"), Some(name));

    // Client streaming.
    let outbound = stream::iter((0..7u32).map(|i| EchoRequest {
        payload: pattern(1000, i),
        ..Default::default()
    }));
    let reply = client
        .client_stream(with_jobid(Request::new(outbound), key))
        .await
        .expect("client stream");
    assert_eq!(reply.get_ref().received_messages, 7);
    assert_eq!(trailer(reply.metadata(), "x-upstream"), Some(name));

    // Bidi, a 4 MiB message each way.
    let outbound = stream::iter((0..2u32).map(|i| EchoRequest {
        payload: pattern(BIG, 10 + i),
        ..Default::default()
    }));
    let response = client
        .bidi_stream(with_jobid(Request::new(outbound), key))
        .await
        .expect("bidi");
    let mut inbound = response.into_inner();
    for i in 0..2u32 {
        let reply = inbound.message().await.expect("bidi reply").expect("one");
        assert!(reply.payload == pattern(BIG, 10 + i), "bidi reply {i}");
    }
    assert!(inbound.message().await.expect("bidi end").is_none());
    let trailers = inbound.trailers().await.expect("trailers").expect("some");
    assert_eq!(trailer(&trailers, "x-upstream"), Some(name));
}

#[test]
fn a_tls_client_reaches_tls_and_plaintext_targets_with_every_rpc_kind() {
    run(LIMIT, async {
        let pki = Pki::new("test CA");
        let files = gateway_files(&pki);
        let env = tls_gateway(&files)
            .upstream_with("secure", UpstreamOptions::tls(pki.server()))
            .upstream("plain")
            .route("job-secure", "secure")
            .route("job-plain", "plain")
            .route("job-both", "secure,plain")
            .start()
            .await;
        let mut client = env.tls_client(&pki.ca, None).await.expect("TLS connect");
        all_kinds(&mut client, "job-secure", "secure").await;
        all_kinds(&mut client, "job-plain", "plain").await;
        // A route mixing both: each call lands on one of them.
        for _ in 0..6 {
            let reply = client
                .unary(routed(EchoRequest::default(), "job-both"))
                .await
                .expect("mixed route");
            assert!(["secure", "plain"].contains(&reply.get_ref().upstream.as_str()));
        }
        // The plaintext port keeps working beside the TLS one.
        let mut plain = env.client().await;
        all_kinds(&mut plain, "job-secure", "secure").await;
        assert!(env.metric("ringway_tls_handshakes_total", &[("side", "downstream")]) >= 1.0);
        assert!(env.metric("ringway_tls_handshakes_total", &[("side", "upstream")]) >= 1.0);
    });
}

/// The same `host:port` named plaintext and `https://` gets two pools: the TLS dial to a
/// plaintext target fails on its own, and the plaintext calls never ride a TLS connection.
#[test]
fn a_tls_and_a_plaintext_target_on_one_address_never_share_a_connection() {
    run(LIMIT, async {
        let pki = Pki::new("test CA");
        let files = gateway_files(&pki);
        let env = tls_gateway(&files).upstream("plain").start().await;
        let addr = env.upstream("plain").addr();
        env.redis().set("job-plain", &addr.to_string());
        env.redis().set("job-http", &format!("http://{addr}"));
        env.redis().set("job-https", &format!("https://{addr}"));
        let mut client = env.client().await;
        for key in ["job-plain", "job-http"] {
            client
                .unary(routed(EchoRequest::default(), key))
                .await
                .expect("plaintext");
        }
        let status = client
            .unary(routed(EchoRequest::default(), "job-https"))
            .await
            .expect_err("TLS to a plaintext target");
        assert_eq!(status.code(), Code::Unavailable, "{status:?}");
        assert!(
            status.message().contains(&format!("TLS to {addr}")),
            "{status:?}"
        );
        client
            .unary(routed(EchoRequest::default(), "job-plain"))
            .await
            .expect("the plaintext pool is untouched");
    });
}

#[test]
fn mtls_on_both_hops_forwards_the_identity_and_strips_a_spoofed_one() {
    run(LIMIT, async {
        let pki = Pki::new("test CA");
        let files = gateway_files(&pki);
        let client_ca = pki.write_ca("clients");
        // ringway's own client certificate, for the target that asks for one.
        let ringway_cert = Pki::write(&pki.client("ringway"), "ringway-client");
        let access_log = TempPath::new("access.log");
        let config = format!(
            "[downstream.tls]\nclient_ca = \"{}\"\nidentity_header = \"{IDENTITY}\"\n\
             [upstream.tls]\ncert = \"{}\"\nkey = \"{}\"\n[access_log]\npath = \"{}\"\n",
            client_ca.as_str(),
            ringway_cert.cert(),
            ringway_cert.key(),
            access_log.as_str(),
        );
        let strict = UpstreamOptions {
            tls: Some(UpstreamTls {
                identity: pki.server(),
                client_ca: Some(pki.ca.clone()),
            }),
            ..UpstreamOptions::default()
        };
        let env = tls_gateway(&files)
            .config(&config)
            .upstream_with("strict", strict)
            .upstream("plain")
            .route("job-strict", "strict")
            .route("job-plain", "plain")
            .start()
            .await;
        let alice = pki.client("alice");
        let mut client = env
            .tls_client(&pki.ca, Some(&alice))
            .await
            .expect("mTLS connect");
        all_kinds(&mut client, "job-strict", "strict").await;
        all_kinds(&mut client, "job-plain", "plain").await;

        // The identity reaches the target (which echoes `x-echo-*` back); a spoofed header
        // from the client is replaced, not added to.
        let mut request = routed(EchoRequest::default(), "job-plain");
        request
            .metadata_mut()
            .insert(IDENTITY, "mallory".parse().unwrap());
        let reply = client.unary(request).await.expect("unary");
        let forwarded: Vec<_> = reply.metadata().get_all(IDENTITY).iter().collect();
        assert_eq!(forwarded, ["alice"], "only the verified identity");

        // On the plaintext port there is no identity: a spoofed one is dropped.
        let mut plain = env.client().await;
        let mut request = routed(EchoRequest::default(), "job-plain");
        request
            .metadata_mut()
            .insert(IDENTITY, "mallory".parse().unwrap());
        let reply = plain.unary(request).await.expect("unary");
        assert!(
            reply.metadata().get(IDENTITY).is_none(),
            "a spoofed identity header was forwarded: {:?}",
            reply.metadata()
        );

        // A client without a certificate is refused at the handshake.
        let refused = match env.tls_client(&pki.ca, None).await {
            Err(_) => true,
            // TLS 1.3: the client learns of the refusal on its first read.
            Ok(mut client) => client
                .unary(routed(EchoRequest::default(), "job-plain"))
                .await
                .is_err(),
        };
        assert!(refused, "a client without a certificate was served");
        eventually(Duration::from_secs(5), "the refusal counted", || async {
            let n = env.metric(
                "ringway_tls_handshake_failures_total",
                &[("side", "downstream"), ("reason", "certificate")],
            );
            if n >= 1.0 {
                Ok(())
            } else {
                Err(n)
            }
        })
        .await;
        // The access log names the client.
        eventually(
            Duration::from_secs(5),
            "the identity in the access log",
            || async {
                let lines = access_log.lines();
                if lines
                    .iter()
                    .any(|l| l.contains("\"client_identity\":\"alice\""))
                {
                    Ok(())
                } else {
                    Err(lines)
                }
            },
        )
        .await;
    });
}

/// A raw rustls client config trusting `ca`, offering `alpn`, with its own session store.
fn raw_client(ca: &str, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca.as_bytes()).expect("CA PEM"))
        .expect("a CA");
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

async fn raw_connect(
    config: &Arc<rustls::ClientConfig>,
    addr: SocketAddr,
) -> std::io::Result<ringway_testkit::tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let name = ServerName::try_from("localhost").expect("a name");
    TlsConnector::from(config.clone()).connect(name, tcp).await
}

#[test]
fn an_http1_only_client_is_refused_with_no_application_protocol() {
    run(LIMIT, async {
        let pki = Pki::new("test CA");
        let files = gateway_files(&pki);
        let env = tls_gateway(&files).start().await;
        let config = raw_client(&pki.ca, &[b"http/1.1"]);
        let error = raw_connect(&config, env.tls_addr())
            .await
            .expect_err("an http/1.1-only client was accepted");
        assert!(
            error
                .to_string()
                .to_lowercase()
                .contains("noapplicationprotocol")
                || error.to_string().contains("no_application_protocol")
                || error.to_string().contains("NoApplicationProtocol"),
            "{error}"
        );
        let n = env.metric(
            "ringway_tls_handshake_failures_total",
            &[("side", "downstream"), ("reason", "alpn")],
        );
        assert_eq!(n, 1.0);
    });
}

#[test]
fn a_target_whose_certificate_does_not_verify_fails_the_call_naming_it() {
    run(LIMIT, async {
        let pki = Pki::new("test CA");
        let stranger = Pki::new("another CA");
        let files = gateway_files(&pki);
        let env = tls_gateway(&files)
            .upstream_with(
                "wrong-name",
                UpstreamOptions::tls(pki.server_for("elsewhere.test")),
            )
            .upstream_with("untrusted", UpstreamOptions::tls(stranger.server()))
            .route("job-name", "wrong-name")
            .route("job-ca", "untrusted")
            .start()
            .await;
        let mut client = env.client().await;
        for (key, name, why) in [
            ("job-name", "wrong-name", "not valid for name"),
            ("job-ca", "untrusted", "UnknownIssuer"),
        ] {
            let status = client
                .unary(routed(EchoRequest::default(), key))
                .await
                .expect_err("a call to a target with a bad certificate");
            let addr = env.upstream(name).addr();
            assert_eq!(status.code(), Code::Unavailable, "{status:?}");
            assert!(
                status.message().contains(&format!("TLS to {addr}")),
                "{status:?}"
            );
            assert!(status.message().contains(why), "{status:?}");
            assert_eq!(env.upstream(name).calls(), 0);
        }
        let n = env.metric(
            "ringway_tls_handshake_failures_total",
            &[("side", "upstream"), ("reason", "certificate")],
        );
        assert_eq!(n, 2.0);
    });
}

/// Runs ringway with `args` until it exits (it must, within 20 s): (exit code, stderr).
fn run_to_exit(args: &[&str]) -> (Option<i32>, String) {
    let mut child = Command::new(RINGWAY)
        .args(["--admin", "", "--redis", "127.0.0.1:1"])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ringway");
    for _ in 0..200 {
        if let Some(status) = child.try_wait().expect("wait") {
            let mut stderr = String::new();
            let _ = child
                .stderr
                .take()
                .map(|mut e| e.read_to_string(&mut stderr));
            return (status.code(), stderr);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    panic!("ringway {args:?} did not exit");
}

#[test]
fn bad_downstream_certificates_stop_the_start_naming_the_file() {
    let pki = Pki::new("test CA");
    let expired = Pki::write(&pki.expired_server(), "expired");
    let mismatched = Pki::write(&pki.mismatched_server(), "mismatched");
    let cases = [
        (&expired, expired.cert(), "expired"),
        (&mismatched, mismatched.key(), "does not match"),
    ];
    for (files, named, why) in cases {
        let (code, stderr) = run_to_exit(&[
            "--listen",
            "127.0.0.1:0",
            "--tls-listen",
            "127.0.0.1:0",
            "--tls-cert",
            files.cert(),
            "--tls-key",
            files.key(),
        ]);
        assert_eq!(code, Some(1), "{stderr}");
        assert!(stderr.contains(named) && stderr.contains(why), "{stderr}");
    }
    let (code, stderr) = run_to_exit(&["--listen", "off"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("`listen`"), "{stderr}");
}

#[test]
fn a_stalled_handshake_is_cut_at_the_handshake_timeout() {
    run(LIMIT, async {
        let pki = Pki::new("test CA");
        let files = gateway_files(&pki);
        let env = tls_gateway(&files)
            .config("[downstream]\nhandshake_timeout_ms = 300\n")
            .start()
            .await;
        let addr = env.tls_addr();
        // The first bytes of a ClientHello record, then nothing.
        let closed = tokio::task::spawn_blocking(move || {
            let mut socket = TcpStream::connect(addr).expect("connect");
            socket
                .write_all(&[0x16, 0x03, 0x01, 0x02, 0x00])
                .expect("write");
            socket
                .set_read_timeout(Some(Duration::from_secs(10)))
                .unwrap();
            let mut buf = [0u8; 64];
            matches!(socket.read(&mut buf), Ok(0) | Err(_))
        })
        .await
        .unwrap();
        assert!(closed, "the stalled handshake was not closed");
        let n = env.metric(
            "ringway_tls_handshake_failures_total",
            &[("side", "downstream"), ("reason", "timeout")],
        );
        assert_eq!(n, 1.0);
    });
}

/// Writes `bytes` to `addr` and reads until the connection closes: true if it closed (EOF or
/// reset) with at most `max` bytes received, within 5 s.
fn closed_after(addr: SocketAddr, bytes: &[u8], max: usize) -> bool {
    let mut socket = TcpStream::connect(addr).expect("connect");
    socket.write_all(bytes).expect("write");
    socket
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut got = 0;
    let mut buf = [0u8; 4096];
    loop {
        match socket.read(&mut buf) {
            Ok(0) => return got <= max,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return false,
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => return false,
            Err(_) => return got <= max,
        }
    }
}

#[test]
fn plaintext_on_the_tls_port_and_tls_on_the_plaintext_port_are_closed_and_counted() {
    run(LIMIT, async {
        let pki = Pki::new("test CA");
        let files = gateway_files(&pki);
        let env = tls_gateway(&files).start().await;
        let (tls, plain) = (env.tls_addr(), env.addr());
        let preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00";
        let (a, b) = tokio::task::spawn_blocking(move || {
            // Plaintext HTTP/2 on the TLS port: nothing comes back.
            let a = closed_after(tls, preface, 0);
            // A ClientHello on the plaintext port: closed at once (at most our SETTINGS, sent
            // on accept, came first).
            let b = closed_after(plain, &[0x16, 0x03, 0x01, 0x00, 0x05, 1, 0, 0, 1, 0], 64);
            (a, b)
        })
        .await
        .unwrap();
        assert!(a, "plaintext on the TLS port was not closed at once");
        assert!(b, "TLS on the plaintext port was not closed at once");
        // A real TLS client on the plaintext port fails too.
        let config = raw_client(&pki.ca, &[b"h2"]);
        assert!(raw_connect(&config, plain).await.is_err());
        let not_tls = env.metric(
            "ringway_tls_handshake_failures_total",
            &[("side", "downstream"), ("reason", "not_tls")],
        );
        assert_eq!(not_tls, 1.0);
        let on_plain = env.metric("ringway_downstream_tls_on_plaintext_port_total", &[]);
        assert_eq!(on_plain, 2.0);
    });
}

#[test]
fn a_reload_serves_new_handshakes_the_new_certificate_and_keeps_old_connections() {
    run(LIMIT, async {
        let first = Pki::new("first CA");
        let second = Pki::new("second CA");
        let files = gateway_files(&first);
        let mut env = tls_gateway(&files)
            .upstream("plain")
            .route("job", "plain")
            .start()
            .await;
        let mut old = env.tls_client(&first.ca, None).await.expect("connect");
        old.unary(routed(EchoRequest::default(), "job"))
            .await
            .expect("a call before the reload");

        // New files, then POST /reload.
        let replacement = second.server();
        pki::overwrite(files.server.cert.path(), &replacement.cert);
        pki::overwrite(files.server.key.path(), &replacement.key);
        let (status, body) = env.gateway().admin_post("/reload");
        assert_eq!(status, 200, "{body}");
        let mut new = env
            .tls_client(&second.ca, None)
            .await
            .expect("the new cert");
        new.unary(routed(EchoRequest::default(), "job"))
            .await
            .expect("a call on a new connection");
        let stale = match env.tls_client(&first.ca, None).await {
            Err(_) => true,
            Ok(mut c) => c
                .unary(routed(EchoRequest::default(), "job"))
                .await
                .is_err(),
        };
        assert!(stale, "a new handshake still used the old certificate");
        old.unary(routed(EchoRequest::default(), "job"))
            .await
            .expect("the connection made before the reload still works");

        // A bad file: the reload fails, names it, and the current certificate stays.
        pki::overwrite(files.server.cert.path(), "not a certificate");
        let (status, body) = env.gateway().admin_post("/reload");
        assert_eq!(status, 500, "{body}");
        assert!(body.contains(files.server.cert()), "{body}");
        assert_eq!(env.metric("ringway_tls_reload_failing", &[]), 1.0);
        env.tls_client(&second.ca, None)
            .await
            .expect("still the second certificate")
            .unary(routed(EchoRequest::default(), "job"))
            .await
            .expect("a call after the failed reload");

        // SIGHUP reloads too.
        pki::overwrite(files.server.cert.path(), &replacement.cert);
        env.gateway_mut().signal("HUP");
        eventually(Duration::from_secs(10), "SIGHUP reloads", || async {
            let ok = env.metric("ringway_tls_reloads_total", &[("result", "ok")]);
            if ok >= 2.0 && env.metric("ringway_tls_reload_failing", &[]) == 0.0 {
                Ok(())
            } else {
                Err(ok)
            }
        })
        .await;
        assert!(
            env.gateway_mut().try_wait().is_none(),
            "SIGHUP ended ringway"
        );
    });
}

#[test]
fn a_second_connection_resumes_its_session_on_both_hops() {
    run(LIMIT, async {
        let pki = Pki::new("test CA");
        let files = gateway_files(&pki);
        let env = tls_gateway(&files)
            .config("[upstream]\nidle_timeout_ms = 100\n")
            .upstream_with("secure", UpstreamOptions::tls(pki.server()))
            .route("job", "secure")
            .start()
            .await;
        // Downstream: one client session store, two connections.
        let config = raw_client(&pki.ca, &[b"h2"]);
        for round in 0..2 {
            let mut tls = raw_connect(&config, env.tls_addr()).await.expect("connect");
            let kind = tls.get_ref().1.handshake_kind();
            if round == 1 {
                assert_eq!(kind, Some(rustls::HandshakeKind::Resumed));
            }
            // Read the server's first flight (its tickets come before its SETTINGS).
            tls.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
                .await
                .expect("preface");
            let mut buf = [0u8; 9];
            tls.read_exact(&mut buf)
                .await
                .expect("the server's SETTINGS");
        }
        assert_eq!(
            env.metric("ringway_tls_resumed_total", &[("side", "downstream")]),
            1.0
        );

        // Upstream: a call, the idle connection closes, the next call dials again and resumes.
        let mut client = env.client().await;
        client
            .unary(routed(EchoRequest::default(), "job"))
            .await
            .expect("first call");
        eventually(Duration::from_secs(10), "a resumed upstream dial", || {
            let mut client = client.clone();
            let env = &env;
            async move {
                client
                    .unary(routed(EchoRequest::default(), "job"))
                    .await
                    .map_err(|e| e.to_string())?;
                let resumed = env.metric("ringway_tls_resumed_total", &[("side", "upstream")]);
                if resumed >= 1.0 {
                    Ok(())
                } else {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    Err(format!("resumed {resumed}"))
                }
            }
        })
        .await;
    });
}

/// The keys the tests above lean on are what the docs say.
#[test]
fn pem_material_round_trips() {
    let pki = Pki::new("test CA");
    let server: Pem = pki.server();
    assert!(server.cert.contains("BEGIN CERTIFICATE"));
    assert!(server.key.contains("PRIVATE KEY"));
}

//! Configuration reload (`POST /reload`, SIGHUP): a good file applies to new calls within a
//! control tick, what a running process cannot change is named and kept, a bad file changes
//! nothing and says why (in the answer and in the metrics), and twenty reloads under a steady
//! load of all four call kinds fail no call.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ringway_testkit::steady::{worker, Tally};
use ringway_testkit::tonic::Code;
use ringway_testkit::tonic::Request;
use ringway_testkit::{eventually, run, tokio, EchoRequest, Env};

const RINGWAY: &str = env!("CARGO_BIN_EXE_ringway");
const LIMIT: Duration = Duration::from_secs(120);

fn write(env: &Env, toml: &str) {
    let path = env.config_path().expect("started with a config file");
    std::fs::write(path, toml).expect("rewrite the config file");
}

/// A unary call with `header: key`; its status code.
async fn call_with(env: &Env, header: &'static str, key: &str) -> Code {
    let mut client = env.client().await;
    let mut request = Request::new(EchoRequest::default());
    request
        .metadata_mut()
        .insert(header, key.parse().expect("a header value"));
    match client.unary(request).await {
        Ok(_) => Code::Ok,
        Err(status) => status.code(),
    }
}

#[test]
fn a_new_routing_header_applies_to_new_calls() {
    run(LIMIT, async {
        let env = Env::builder(RINGWAY)
            .shards(2)
            .upstream("up")
            .route("job", "up")
            .config("[route]\nheader = \"jobid\"\n")
            .start()
            .await;
        assert_eq!(call_with(&env, "jobid", "job").await, Code::Ok);
        write(&env, "[route]\nheader = \"tenant\"\n");
        let (code, text) = env.gateway().admin_post("/reload");
        assert_eq!((code, text.as_str()), (200, "reloaded\n"));
        // Every shard picks it up at its next control tick.
        eventually(Duration::from_secs(2), "the new header in use", || async {
            let new = call_with(&env, "tenant", "job").await;
            let old = call_with(&env, "jobid", "job").await;
            if new == Code::Ok && old == Code::InvalidArgument {
                Ok(())
            } else {
                Err(format!("tenant: {new:?}, jobid: {old:?}"))
            }
        })
        .await;
        let (_, config) = env.gateway().admin_get("/config");
        assert!(config.contains("header = \"tenant\""), "{config}");
        assert_eq!(
            env.metric("ringway_config_reloads_total", &[("result", "ok")]),
            1.0
        );
    });
}

#[test]
fn fixed_fields_are_named_and_kept_and_a_bad_file_changes_nothing() {
    run(LIMIT, async {
        let env = Env::builder(RINGWAY)
            .shards(2)
            .upstream("up")
            .route("job", "up")
            .config("[route]\nheader = \"jobid\"\n")
            .start()
            .await;
        write(
            &env,
            "[route]\nheader = \"jobid\"\n[downstream]\nlisten_backlog = 77\n",
        );
        let (code, text) = env.gateway().admin_post("/reload");
        assert_eq!(code, 200, "{text}");
        assert!(
            text.contains("kept as they were") && text.contains("downstream.listen_backlog"),
            "{text}"
        );
        let (_, config) = env.gateway().admin_get("/config");
        assert!(config.contains("listen_backlog = 1024"), "kept: {config}");

        write(&env, "[route]\nheader = \"not a header\"\n");
        let (code, text) = env.gateway().admin_post("/reload");
        assert_eq!(code, 500, "{text}");
        assert!(
            text.contains("nothing changed") && text.contains("route.header"),
            "{text}"
        );
        assert_eq!(
            call_with(&env, "jobid", "job").await,
            Code::Ok,
            "old config in use"
        );
        assert_eq!(
            env.metric("ringway_config_reloads_total", &[("result", "error")]),
            1.0
        );
        assert_eq!(env.metric("ringway_config_reload_error", &[]), 1.0);

        // SIGHUP: the same reload; a good file clears the error.
        write(&env, "[route]\nheader = \"jobid\"\n");
        env.gateway().signal("HUP");
        eventually(Duration::from_secs(2), "the SIGHUP reload", || async {
            match env.metric("ringway_config_reloads_total", &[("result", "ok")]) {
                2.0 => Ok(()),
                n => Err(n),
            }
        })
        .await;
        assert_eq!(env.metric("ringway_config_reload_error", &[]), 0.0);
    });
}

#[test]
fn twenty_reloads_under_load_fail_no_call() {
    run(LIMIT, async {
        let env = Env::builder(RINGWAY)
            .shards(2)
            .upstream("up")
            .route("job", "up")
            .config("[downstream]\nkeepalive_time_ms = 60000\n")
            .start()
            .await;
        let stop = Arc::new(AtomicBool::new(false));
        let tally = Arc::new(Mutex::new(Tally::default()));
        let workers: Vec<_> = (0..6)
            .map(|id| tokio::spawn(worker(env.addr(), id, stop.clone(), tally.clone())))
            .collect();
        for i in 0..20 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            // Live settings of every kind, changed each time.
            write(
                &env,
                &format!(
                    "[redis]\nlookup_timeout_ms = {}\n[downstream]\nkeepalive_time_ms = {}\n\
                     max_concurrent_streams = {}\n[upstream]\nmax_connections_per_target = {}\n",
                    1000 + i,
                    60000 + i,
                    200 + i,
                    2 + i % 3
                ),
            );
            let (code, text) = env.gateway().admin_post("/reload");
            assert_eq!(code, 200, "reload {i}: {text}");
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        stop.store(true, Ordering::Relaxed);
        for w in workers {
            w.await.unwrap();
        }
        let t = tally.lock().unwrap();
        eprintln!("20 reloads: {} calls ok, {} failed", t.ok, t.failed.len());
        assert!(
            t.failed.is_empty(),
            "failed calls: {:?}",
            &t.failed[..t.failed.len().min(10)]
        );
        assert_eq!(t.unsent, 0, "no connection was closed under the load");
        assert!(t.ok > 100);
        assert_eq!(
            env.metric("ringway_config_reloads_total", &[("result", "ok")]),
            20.0
        );
    });
}

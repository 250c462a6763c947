#!/bin/bash
# The peers after this session's request-path change (the retry of a request that ended with
# its head; nothing on the path of a call that is not retried): 7 interleaved rounds of
# ringway, ringway-cache, HAProxy, nginx (grpc_pass, static) and nginx + Lua + Redis (pooled),
# plaintext, then the TLS group (ringway-tls, ringway-tls-cache, haproxy-tls, nginx-grpc-tls);
# 1,000 routing keys; ringway: release build of 872040b.
set -e
cd "$(dirname "$0")/../../.."
R=bench/results/2026-12-04-872040b-peers
cargo build --release -q -p ringway -p ringway-bench
target/release/scenario --systems ringway,ringway-cache,haproxy,nginx-grpc,nginx-lua --rounds 7 \
  --no-cross-check --duration 3 --warmup 1 --route-keys 1000 --out $R/plain > $R/plain.log 2>&1
target/release/scenario --systems ringway-tls,ringway-tls-cache,haproxy-tls,nginx-grpc-tls \
  --rounds 7 --no-cross-check --handshake-duration 0 --duration 3 --warmup 1 --route-keys 1000 \
  --out $R/tls > $R/tls.log 2>&1

#!/bin/bash
# ringway with TLS on both hops against HAProxy with TLS on both hops, static route
# (haproxy-tls, the reference) and reading the route from Redis on every call as ringway does
# (haproxy-lua-tls): 15 interleaved rounds, 3 s windows, 1,000 routing keys, release build.
# RUN=name: the output directory and log (default rounds; the second run was RUN=rounds-2).
set -e
cd "$(dirname "$0")/../../.."
R=bench/results/2026-12-04-1449f96-tls-lua
cargo build --release -q -p ringway -p ringway-bench
target/release/scenario --systems ringway-tls,ringway-tls-cache,haproxy-tls,haproxy-lua-tls \
  --rounds 15 --no-cross-check --handshake-duration 0 --duration 3 --warmup 1 \
  --route-keys 1000 --out $R/${RUN:-rounds} > $R/${RUN:-rounds}.log 2>&1

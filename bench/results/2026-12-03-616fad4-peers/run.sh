#!/bin/bash
# The peers after step 1 of docs/call-path-plan.md: 7 interleaved rounds of ringway,
# ringway-cache, HAProxy, nginx (grpc_pass, static) and nginx + Lua + Redis (pooled), 1,000
# routing keys; ringway: release build of 616fad4.
cd "$(dirname "$0")/../../.."
R=bench/results/2026-12-03-616fad4-peers
target/release/scenario --systems ringway,ringway-cache,haproxy,nginx-grpc,nginx-lua --rounds 7 \
  --no-cross-check --duration 3 --warmup 1 --route-keys 1000 --out $R/rounds > $R/rounds.log 2>&1

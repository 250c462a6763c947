#!/bin/bash
# Step 1 of docs/call-path-plan.md against its base over TLS on both hops, in the same
# interleaved rounds: A = release build of 08e9a84 (ringway's code as at 1349d01), B = release
# build of 5d68da8; 15 rounds of ringway-tls, ringway-tls-cache (each with A and B) and
# haproxy-tls, 1,000 routing keys.
cd "$(dirname "$0")/../../.."
R=bench/results/2026-12-03-5d68da8-tls-ab
A=${A:?path to the base binary}; B=${B:?path to the changed binary}
target/release/scenario --systems ringway-tls,ringway-tls-cache,haproxy-tls --rounds 15 \
  --no-cross-check --handshake-duration 0 --duration 3 --warmup 1 --route-keys 1000 \
  --ringway "$A" --rounds-ringway-b "$B" --out $R/rounds > $R/rounds.log 2>&1

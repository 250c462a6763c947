#!/bin/bash
# Step 1 of docs/call-path-plan.md whole (49e97c4 + 3db17e8) against its base in the same
# interleaved rounds: A = release build of 08e9a84 (ringway's code as at 1349d01), B = release
# build of 3db17e8; 15 rounds of ringway, ringway-cache (each with A and B) and HAProxy.
cd "$(dirname "$0")/../../.."
R=bench/results/2026-12-03-3db17e8-ab
A=${A:?path to the base binary}; B=${B:?path to the changed binary}
target/release/scenario --systems ringway,ringway-cache,haproxy --rounds 15 --no-cross-check \
  --duration 3 --warmup 1 --route-keys 1000 --ringway "$A" --rounds-ringway-b "$B" \
  --out $R/rounds > $R/rounds.log 2>&1

#!/bin/bash
# Step 1 of docs/call-path-plan.md against its base, in the same interleaved rounds: A = release
# build of 08e9a84 (ringway's code as at 1349d01), B = release build of 49e97c4; 15 rounds of
# ringway, ringway-cache (each with A and B) and HAProxy, 1,000 routing keys. Then callgrind,
# A and B, with a GET per call, with the cache, and over TLS.
cd "$(dirname "$0")/../../.."
R=bench/results/2026-12-03-49e97c4-step1-ab
A=${A:?path to the base binary}; B=${B:?path to the changed binary}
target/release/scenario --systems ringway,ringway-cache,haproxy --rounds 15 --no-cross-check \
  --duration 3 --warmup 1 --route-keys 1000 --ringway "$A" --rounds-ringway-b "$B" \
  --out $R/rounds > $R/rounds.log 2>&1
for bin in "$A" "$B"; do
  for args in "--keys 1000" "--cache --keys 1000" "--tls"; do
    echo "$bin $args: $(RINGWAY_BIN=$bin bash bench/profile $args 2>&1 | grep 'instructions per call')"
  done
done > $R/callgrind.txt

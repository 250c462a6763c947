#!/bin/bash
# Step 3 of docs/call-path-plan.md (a unary call's answer relayed without its task), tried and
# not landed: its code is step3-splice.patch here, which applies to 34696a1. A = release build
# of 34696a1, B = release build of 34696a1 + the patch. Paired interleaved rounds (15, 3 s
# windows, 1,000 routing keys), plaintext and TLS on both hops, and callgrind counts.
#
#   git worktree add /tmp/s3 34696a1 && git -C /tmp/s3 apply "$PWD/$R/step3-splice.patch"
#   (cd /tmp/s3 && cargo build --release -p ringway)   # B = /tmp/s3/target/release/ringway
set -e
cd "$(dirname "$0")/../../.."
R=bench/results/2026-12-04-34696a1-step3-splice-ab
A=${A:?path to the base binary}; B=${B:?path to the patched binary}
target/release/scenario --systems ringway,ringway-cache,haproxy --rounds 15 --no-cross-check \
  --duration 3 --warmup 1 --route-keys 1000 \
  --ringway "$A" --rounds-ringway-b "$B" --out $R/plain > $R/plain.log 2>&1
target/release/scenario --systems ringway-tls,ringway-tls-cache,haproxy-tls --rounds 15 \
  --no-cross-check --handshake-duration 0 --duration 3 --warmup 1 --route-keys 1000 \
  --ringway "$A" --rounds-ringway-b "$B" --out $R/tls > $R/tls.log 2>&1
for bin in "$A" "$B"; do
  RINGWAY_BIN=$bin bash bench/profile --keys 1000 | grep 'instructions per call'
  RINGWAY_BIN=$bin bash bench/profile --cache --keys 1000 | grep 'instructions per call'
done

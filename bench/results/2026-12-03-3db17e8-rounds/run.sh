#!/bin/bash
# 15 interleaved rounds each of the plaintext and the TLS systems, 1,000 routing keys, as
# 2026-12-03-c5f079a-rounds/ (same command); ringway: release build of 3db17e8 (steps 1 and 1b
# of docs/call-path-plan.md).
cd "$(dirname "$0")/../../.."
R=bench/results/2026-12-03-3db17e8-rounds
common="--rounds 15 --no-cross-check --duration 3 --warmup 1 --route-keys 1000"
target/release/scenario --systems ringway,ringway-cache,haproxy $common --out $R/plain > $R/plain.log 2>&1
target/release/scenario --systems ringway-tls,ringway-tls-cache,haproxy-tls $common --handshake-duration 0 --out $R/tls > $R/tls.log 2>&1

#!/bin/bash
# The sweep (1 … 1,024 calls in flight) on the epoll default, three rotated runs, 1,000 routing keys.
cd "$(dirname "$0")/../../.."
R=bench/results/2026-12-03-1c2b4f9-sweep
common="--no-cross-check --handshake-duration 0 --duration 8 --route-keys 1000 --sweep"
target/release/scenario --systems ringway,ringway-cache,haproxy $common --out $R/run1 > $R/run1.log 2>&1
target/release/scenario --systems ringway-cache,haproxy,ringway $common --out $R/run2 > $R/run2.log 2>&1
target/release/scenario --systems haproxy,ringway,ringway-cache $common --out $R/run3 > $R/run3.log 2>&1
echo ALLDONE

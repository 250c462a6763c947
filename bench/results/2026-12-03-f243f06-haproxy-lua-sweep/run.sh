#!/bin/bash
# Three rotated runs of ringway (a GET per call), ringway-cache, HAProxy reading Redis from Lua
# (haproxy-lua) and HAProxy's static route, with the sweep at 1 … 1,024 calls in flight;
# 1,000 routing keys, release build of f243f06 (ringway's code as at 1349d01).
cd "$(dirname "$0")/../../.."
R=bench/results/2026-12-03-f243f06-haproxy-lua-sweep
common="--no-cross-check --handshake-duration 0 --duration 5 --warmup 1 --route-keys 1000 --sweep --sweep-levels 1,2,4,8,16,32,64,128,256,512,1024 --sweep-duration 3 --sweep-warmup 1"
target/release/scenario --systems ringway,haproxy-lua,haproxy,ringway-cache $common --out $R/run1 > $R/run1.log 2>&1
target/release/scenario --systems haproxy-lua,haproxy,ringway-cache,ringway $common --out $R/run2 > $R/run2.log 2>&1
target/release/scenario --systems haproxy,ringway-cache,ringway,haproxy-lua $common --out $R/run3 > $R/run3.log 2>&1
echo ALLDONE

#!/bin/bash
# 1, 2 and 4 calls in flight, three rotated runs, epoll default (one routing key).
cd "$(dirname "$0")/../../.."
R=bench/results/2026-12-03-a506544-low-load
common="--no-cross-check --handshake-duration 0 --duration 2 --sweep --sweep-levels 1,2,4 --sweep-duration 5"
target/release/scenario --systems ringway-cache,haproxy,nginx-grpc,ringway $common --out $R/run1 > $R/run1.log 2>&1
target/release/scenario --systems haproxy,nginx-grpc,ringway,ringway-cache $common --out $R/run2 > $R/run2.log 2>&1
target/release/scenario --systems nginx-grpc,ringway,ringway-cache,haproxy $common --out $R/run3 > $R/run3.log 2>&1
echo ALLDONE

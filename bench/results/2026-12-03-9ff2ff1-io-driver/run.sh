#!/bin/bash
# Alternating io_uring / epoll runs of the same binary.
cd /work/main
R=bench/results/2026-12-03-9ff2ff1-io-driver
for i in 1 2 3; do
  for d in io_uring epoll; do
    target/release/scenario --systems ringway-cache,ringway,haproxy --no-cross-check --handshake-duration 0 \
      --rate 15000 --duration 6 --route-keys 1000 --ringway-arg=--io-driver=$d --out $R/open15k-$d-$i > $R/open15k-$d-$i.log 2>&1
  done
done
for i in 1 2 3; do
  for d in io_uring epoll; do
    target/release/scenario --systems ringway-cache,ringway,haproxy --no-cross-check --handshake-duration 0 \
      --duration 8 --route-keys 1000 --ringway-arg=--io-driver=$d --out $R/c64-$d-$i > $R/c64-$d-$i.log 2>&1
  done
done
echo ALLDONE

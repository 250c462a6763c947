#!/bin/bash
# Three rotated runs: ringway and HAProxy as gateways, and HAProxy relaying TCP (the floors),
# plaintext and TLS on both hops, 1,000 routing keys (a GET per call for `ringway`).
cd "$(dirname "$0")/../../.."
R=bench/results/2026-12-03-7523c73-floors
common="--no-cross-check --handshake-duration 0 --duration 8 --route-keys 1000"
for i in 1 2 3; do
  case $i in
    1) order=ringway,ringway-cache,haproxy,haproxy-tcp,ringway-tls,ringway-tls-cache,haproxy-tls,haproxy-tcp-tls ;;
    2) order=haproxy,haproxy-tcp,ringway-tls,ringway-tls-cache,haproxy-tls,haproxy-tcp-tls,ringway,ringway-cache ;;
    3) order=haproxy-tls,haproxy-tcp-tls,ringway,ringway-cache,haproxy,haproxy-tcp,ringway-tls,ringway-tls-cache ;;
  esac
  target/release/scenario --systems $order $common --out $R/run$i > $R/run$i.log 2>&1
done
echo ALLDONE

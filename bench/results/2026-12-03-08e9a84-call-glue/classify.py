#!/usr/bin/env python3
"""Sums a `perf report --no-children --sort dso,sym --stdio` listing of the shard's core into
the parts of a call: the glue a call task brings (task polls, futures and wakers, the relay's
state machines, the stream handles) and the work any design keeps (HPACK, frames, I/O, routing,
Redis, copies, the kernel). A symbol goes to the first pattern it matches.

perf names a function by where the compiler left it, so a future's body inlined into a task
poll counts as the poll: the glue rows are an upper bound on what a call path without a call
task would save, not the saving (see NOTE.md for the lower bound from callgrind).

    python3 classify.py flat.txt
"""
import re
import sys

CATEGORIES = [
    ("glue: task polls, futures, wakers",
     r"monoio::task::raw::poll|Pin<P> as core::future|poll_unpin|PollFn|wake_by_val|clone_waker"
     r"|drop_waker|wake_by_ref|futures_util::future::select|Select|drop_in_place<ringway::proxy::relay"
     r"|drop_in_place<ringway::proxy::Proxy::forward|schedule|workers"),
    ("glue: relay state machines (pump, relay, forward bodies)",
     r"relay::pump|relay::relay|relay_response|forward_chunk|Proxy::forward::\{\{closure\}\}|serve_call"),
    ("glue: stream handles",
     r"handles::(RecvStream::poll_recv|Handle::poll_reset|Handle as core::ops::drop"
     r"|SendStream::poll_capacity|Respond::poll_reset)|poll_granted"),
    ("work: HPACK, header checks, frames",
     r"hpack|write_head|on_header_block|check_fields|huffman|read_string|evict_to|encode_|Fields|Field\]|frame"),
    ("work: connection I/O and streams", r"Conn::recv|State::|streams::|handles::|io::|Conn::"),
    ("work: routing, Redis, pools", r"redis|route::|Router|upstream::|TargetPool|Lease|pool"),
    ("bytes, alloc, libc",
     r"bytes::|malloc|free|memmove|memcpy|memcmp|memset|alloc::|_int_|hashbrown|foldhash|VecDeque|vec_deque"),
    ("clock, metrics", r"clock_gettime|read_tsc|hdrhistogram|Timespec|Instant|metrics"),
    ("kernel", r"^\[kernel"),
]


def main(path):
    totals = {}
    for line in open(path):
        m = re.match(r"\s*([\d.]+)%\s+(\S+)\s+\[(.)\]\s+(.*)", line)
        if not m:
            continue
        share, sym = float(m.group(1)), m.group(4)
        key = "[kernel" if m.group(3) == "k" else sym
        name = next((n for n, p in CATEGORIES if re.search(p, key)), "other")
        totals[name] = totals.get(name, 0) + share
    for name in [n for n, _ in CATEGORIES] + ["other"]:
        print(f"{totals.get(name, 0):6.1f}%  {name}")
    glue = sum(v for k, v in totals.items() if k.startswith("glue"))
    print(f"{glue:6.1f}%  glue, all three rows")


if __name__ == "__main__":
    main(sys.argv[1])

//! The HTTP/2 engine as a server (`Conn::new(Role::Server, ..)`) reading what a client sends.
//!
//! Input: a `Plan` header (see `src/lib.rs`), then the client's bytes (a well-formed
//! connection starts with the preface and SETTINGS). The bytes are appended to one read buffer
//! in the plan's chunk sizes and `conn.recv(&mut buf)` is called after each, as the driver
//! (`src/wire/io.rs`) does. After each read the application accepts new streams and, per the
//! plan's 2-bit action for the stream:
//!
//! - 0: drops it at once (the engine resets it);
//! - 1: answers trailers-only (`:status 200, grpc-status 12`, END_STREAM) and drops it;
//! - 2: echoes: answers a head, sends back what it reads as far as flow control allows, and
//!   trailers once the request ended;
//! - 3: holds it unanswered and reads its body without releasing it (back-pressure).
//!
//! Options: 0 = graceful shutdown after the first read, 1 = send a PING after the first read,
//! 2 = `abrupt_shutdown` at the end instead of just dropping the handles, 3 = `retire` after
//! the first read.
//!
//! Checks: nothing panics (including the engine's overflow checks and `RefCell` borrows);
//! `recv` consumes whole frames and leaves at most a partial one when it says to read on; and
//! everything the engine writes is valid HTTP/2 for the client, flow control included (`Peer`
//! in `src/lib.rs` lists the checks).
#![no_main]

use std::task::Poll;

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use ringway::wire::conn::Chunk;
use ringway::wire::{Conn, Fields, Reason, RecvStream, Respond, Role, SendStream, Settings};
use ringway_fuzz::{cx, fields, Peer, Plan};

/// A stream the application keeps.
struct Kept {
    body: RecvStream,
    /// Held unanswered (action 3): dropped with the rest at the end.
    _respond: Option<Respond>,
    /// Answered with a head, body to follow (action 2).
    send: Option<SendStream>,
    /// Release what is read (action 2) or not (action 3).
    release: bool,
    /// Read but not yet echoed.
    echo: Vec<u8>,
    request_ended: bool,
    failed: bool,
}

impl Kept {
    /// Reads what arrived; echoes it and ends the response when the request ended.
    fn step(&mut self) {
        while !self.request_ended && !self.failed {
            match self.body.poll_recv(&mut cx()) {
                Poll::Ready(Ok(Some(Chunk::Data(data, end)))) => {
                    if self.release {
                        self.body.release(data.len());
                    }
                    if self.send.is_some() {
                        self.echo.extend_from_slice(&data);
                    }
                    self.request_ended = end;
                }
                Poll::Ready(Ok(Some(Chunk::Trailers(_)))) => {}
                Poll::Ready(Ok(None)) => self.request_ended = true,
                Poll::Ready(Err(_)) => self.failed = true,
                Poll::Pending => break,
            }
        }
        let Some(send) = self.send.as_mut() else {
            return;
        };
        while !self.echo.is_empty() {
            match send.poll_capacity(&mut cx()) {
                Poll::Ready(Ok(n)) => {
                    let n = n.min(self.echo.len());
                    if send.send_data(&self.echo[..n], false).is_err() {
                        self.send = None;
                        return;
                    }
                    self.echo.drain(..n);
                }
                Poll::Ready(Err(_)) => {
                    self.send = None;
                    return;
                }
                Poll::Pending => return,
            }
        }
        if self.request_ended {
            let _ = send.send_trailers(&fields(&[("grpc-status", "0")]));
            self.send = None;
        }
    }
}

fn response_head() -> Fields {
    fields(&[(":status", "200"), ("content-type", "application/grpc")])
}

/// Accepts the streams waiting and does with each what the plan says.
fn accept(conn: &Conn, plan: &Plan, accepted: &mut usize, kept: &mut Vec<Kept>) {
    while let Some(incoming) = conn.try_accept() {
        let action = plan.action(*accepted);
        *accepted += 1;
        let mut respond = incoming.respond;
        match action {
            0 => {}
            1 => {
                let head = fields(&[
                    (":status", "200"),
                    ("content-type", "application/grpc"),
                    ("grpc-status", "12"),
                ]);
                let _ = respond.send_response(&head, true);
            }
            2 => {
                let send = respond.send_response(&response_head(), false).ok();
                kept.push(Kept {
                    body: incoming.body,
                    _respond: None,
                    send,
                    release: true,
                    echo: Vec::new(),
                    request_ended: incoming.end,
                    failed: false,
                });
            }
            _ => kept.push(Kept {
                body: incoming.body,
                _respond: Some(respond),
                send: None,
                release: false,
                echo: Vec::new(),
                request_ended: incoming.end,
                failed: false,
            }),
        }
    }
    for k in kept.iter_mut() {
        k.step();
    }
}

fuzz_target!(|data: &[u8]| {
    let (plan, input) = Plan::parse(data);
    let conn = Conn::new(Role::Server, Settings::default(), None);
    let mut peer = Peer::new(Role::Server);
    let mut kept = Vec::new();
    let mut accepted = 0;
    let mut buf = BytesMut::new();
    peer.drain(&conn);
    for (i, chunk) in plan.chunks(input).enumerate() {
        let more = peer.recv(&conn, &mut buf, chunk);
        accept(&conn, &plan, &mut accepted, &mut kept);
        if i == 0 {
            if plan.option(0) {
                conn.graceful_shutdown();
            }
            if plan.option(1) {
                conn.send_ping();
            }
            if plan.option(3) {
                conn.retire();
            }
        }
        peer.drain(&conn);
        if !more {
            break;
        }
    }
    if plan.option(2) {
        conn.abrupt_shutdown(Reason::INTERNAL_ERROR, b"fuzz");
    }
    drop(kept);
    peer.drain(&conn);
    conn.finished();
    peer.drain(&conn);
});

//! The HTTP/2 engine as a client (`Conn::new(Role::Client, ..)`) reading what a server sends.
//!
//! Input: a `Plan` header (see `src/lib.rs`), then the server's bytes (a well-formed server
//! starts with SETTINGS). Before reading anything the client opens stream 1 (and stream 3 with
//! option 3) with a gRPC request head. The server's bytes are fed to `conn.recv` in the plan's
//! chunk sizes; after each read the application polls each call's response and body, doing
//! per the plan's 2-bit action for the stream:
//!
//! - 0: sends one message and ends the request; reads the response, releasing what it reads;
//! - 1: the same, but never releases what it reads (back-pressure);
//! - 2: sends one message, then drops every handle of the call after the first read (CANCEL);
//! - 3: uploads 80 KB as flow control allows (waiting on WINDOW_UPDATEs), reading as in 0.
//!
//! Options: 0 = graceful shutdown after the first read, 1 = send a PING after the first read,
//! 2 = `abort` at the end instead of just dropping the handles, 3 = open a second stream,
//! 4 = the first request is head-only (END_STREAM on HEADERS).
//!
//! Checks: nothing panics (including the engine's overflow checks and `RefCell` borrows);
//! `recv` consumes whole frames and leaves at most a partial one when it says to read on; and
//! everything the engine writes is valid HTTP/2 for the server, flow control included (`Peer`
//! in `src/lib.rs` lists the checks).
#![no_main]

use std::future::Future;
use std::pin::Pin;
use std::task::Poll;

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use ringway::wire::conn::Chunk;
use ringway::wire::{Conn, RecvStream, ResponseFuture, Role, SendStream, Settings};
use ringway_fuzz::{cx, fields, Peer, Plan};

const REQUEST: &[(&str, &str)] = &[
    (":method", "POST"),
    (":scheme", "http"),
    (":path", "/pkg.Service/Method"),
    (":authority", "example.com"),
    ("content-type", "application/grpc"),
    ("te", "trailers"),
];

/// The body of action 3: more than the default windows (65,535).
const UPLOAD: usize = 80_000;

/// One call the client made.
struct Call {
    action: u8,
    response: Option<ResponseFuture>,
    send: Option<SendStream>,
    body: Option<RecvStream>,
    /// Bytes of the upload (action 3) still to send.
    upload_left: usize,
}

impl Call {
    fn open(conn: &Conn, action: u8, head_only: bool) -> Option<Call> {
        let (response, mut send) = conn.send_request(&fields(REQUEST), head_only).ok()?;
        let mut upload_left = 0;
        if !head_only {
            if action == 3 {
                upload_left = UPLOAD;
            } else {
                let message = [0, 0, 0, 0, 5, b'h', b'e', b'l', b'l', b'o'];
                let _ = send.send_data(&message, true);
            }
        }
        Some(Call {
            action,
            response: Some(response),
            send: Some(send),
            body: None,
            upload_left,
        })
    }

    fn step(&mut self) {
        if let Some(send) = self.send.as_mut() {
            while self.upload_left > 0 {
                match send.poll_capacity(&mut cx()) {
                    Poll::Ready(Ok(n)) => {
                        let n = n.min(self.upload_left).min(16 << 10);
                        self.upload_left -= n;
                        if send
                            .send_data(&[0x55; 16 << 10][..n], self.upload_left == 0)
                            .is_err()
                        {
                            self.upload_left = 0;
                        }
                    }
                    Poll::Ready(Err(_)) => self.upload_left = 0,
                    Poll::Pending => break,
                }
            }
        }
        if let Some(response) = self.response.as_mut() {
            match Pin::new(response).poll(&mut cx()) {
                Poll::Ready(Ok(r)) => {
                    self.response = None;
                    self.body = Some(r.body);
                }
                Poll::Ready(Err(_)) => self.response = None,
                Poll::Pending => {}
            }
        }
        if let Some(body) = self.body.as_mut() {
            loop {
                match body.poll_recv(&mut cx()) {
                    Poll::Ready(Ok(Some(Chunk::Data(data, _)))) => {
                        if self.action != 1 {
                            body.release(data.len());
                        }
                    }
                    Poll::Ready(Ok(Some(Chunk::Trailers(_)))) => {}
                    Poll::Ready(Ok(None)) | Poll::Ready(Err(_)) => {
                        self.body = None;
                        break;
                    }
                    Poll::Pending => break,
                }
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let (plan, input) = Plan::parse(data);
    let conn = Conn::new(Role::Client, Settings::default(), None);
    let mut peer = Peer::new(Role::Client);
    let mut calls: Vec<Call> = Vec::new();
    calls.extend(Call::open(&conn, plan.action(0), plan.option(4)));
    if plan.option(3) {
        calls.extend(Call::open(&conn, plan.action(1), false));
    }
    peer.drain(&conn);
    let mut buf = BytesMut::new();
    for (i, chunk) in plan.chunks(input).enumerate() {
        let more = peer.recv(&conn, &mut buf, chunk);
        for call in calls.iter_mut() {
            call.step();
        }
        if i == 0 {
            calls.retain(|call| call.action != 2);
            if plan.option(0) {
                conn.graceful_shutdown();
            }
            if plan.option(1) {
                conn.send_ping();
            }
        }
        peer.drain(&conn);
        if !more {
            break;
        }
    }
    if plan.option(2) {
        conn.abort("fuzz: abort");
    }
    drop(calls);
    peer.drain(&conn);
    conn.finished();
    peer.drain(&conn);
});

//! The receive path: the frames the peer sent, checked and applied to the connection's
//! [`State`] (RFC 9113 §6), in the order they arrive.

use bytes::{Buf, Bytes, BytesMut};

use super::conn::{ConnError, Goaway, Role, State, GOAWAY_PING, USER_PING};
use super::frame::{self, Head};
use super::guard::{Flood, Refusal, MAX_CONTINUATIONS, MAX_EARLY_RESETS};
use super::headers::{check_fields, Block, Fields};
use super::streams::{In, Stream, NO_LENGTH};
use super::{Error, Reason};

/// A header block awaiting its CONTINUATION frames.
pub(super) struct Partial {
    stream: u32,
    end_stream: bool,
    /// The HEADERS frame made the stream depend on itself (RFC 9113 §5.3.1).
    self_dependent: bool,
    block: BytesMut,
    frames: u32,
}

impl State {
    /// Handles the whole frames at the front of `buf` (after the client preface, on a server).
    pub(super) fn recv_frames(&mut self, buf: &mut BytesMut) -> Result<(), ConnError> {
        if self.handshake.preface_left > 0 {
            let at = frame::PREFACE.len() - self.handshake.preface_left;
            let n = self.handshake.preface_left.min(buf.len());
            if buf[..n] != frame::PREFACE[at..at + n] {
                return Err(ConnError(Reason::PROTOCOL_ERROR, "not an HTTP/2 preface"));
            }
            buf.advance(n);
            self.handshake.preface_left -= n;
            if self.handshake.preface_left > 0 {
                return Ok(());
            }
        }
        while buf.len() >= frame::HEADER_LEN && !self.shutdown.closing {
            let head = Head::parse(buf);
            if head.len > frame::DEFAULT_MAX_FRAME {
                return Err(ConnError(Reason::FRAME_SIZE_ERROR, "frame too large"));
            }
            let total = frame::HEADER_LEN + head.len as usize;
            if buf.len() < total {
                buf.reserve(total - buf.len());
                break;
            }
            if let Some(observer) = &self.observer {
                observer.read(&head);
            }
            if !self.handshake.got_settings
                && (head.kind != frame::SETTINGS || head.has(frame::FLAG_ACK))
            {
                return Err(ConnError(
                    Reason::PROTOCOL_ERROR,
                    "first frame not SETTINGS",
                ));
            }
            if let Some(p) = &self.partial {
                if head.kind != frame::CONTINUATION || head.stream != p.stream {
                    return Err(ConnError(
                        Reason::PROTOCOL_ERROR,
                        "expected CONTINUATION of a header block",
                    ));
                }
            }
            match head.kind {
                frame::DATA | frame::HEADERS | frame::CONTINUATION => {
                    let mut payload = buf.split_to(total).freeze();
                    payload.advance(frame::HEADER_LEN);
                    match head.kind {
                        frame::DATA => self.on_data(head, payload)?,
                        frame::HEADERS => self.on_headers(head, payload)?,
                        _ => self.on_continuation(head, payload)?,
                    }
                }
                _ => {
                    let payload = &buf[frame::HEADER_LEN..total];
                    let result = self.on_control(head, payload);
                    buf.advance(total);
                    result?;
                }
            }
        }
        Ok(())
    }

    fn on_control(&mut self, head: Head, p: &[u8]) -> Result<(), ConnError> {
        match head.kind {
            frame::PRIORITY => {
                if head.stream == 0 {
                    return Err(ConnError(Reason::PROTOCOL_ERROR, "PRIORITY on stream 0"));
                }
                if p.len() != 5 {
                    return self.stream_error(head.stream, Reason::FRAME_SIZE_ERROR);
                }
                self.count(Flood::Priority)?;
                let depends_on = u32::from_be_bytes([p[0], p[1], p[2], p[3]]) & frame::MAX_WINDOW;
                if depends_on == head.stream {
                    // RFC 9113 §5.3.1: a stream cannot depend on itself.
                    return self.stream_error(head.stream, Reason::PROTOCOL_ERROR);
                }
                Ok(())
            }
            frame::RST_STREAM => {
                if head.stream == 0 {
                    return Err(ConnError(Reason::PROTOCOL_ERROR, "RST_STREAM on stream 0"));
                }
                if p.len() != 4 {
                    return Err(ConnError(Reason::FRAME_SIZE_ERROR, "RST_STREAM length"));
                }
                self.count(Flood::RstStream)?;
                let code = u32::from_be_bytes([p[0], p[1], p[2], p[3]]);
                self.on_rst(head.stream, Reason(code))
            }
            frame::SETTINGS => {
                if head.stream != 0 {
                    return Err(ConnError(Reason::PROTOCOL_ERROR, "SETTINGS on a stream"));
                }
                if head.has(frame::FLAG_ACK) {
                    if !p.is_empty() {
                        return Err(ConnError(
                            Reason::FRAME_SIZE_ERROR,
                            "SETTINGS ACK with payload",
                        ));
                    }
                    self.handshake.settings_acked = true;
                    return Ok(());
                }
                if !p.len().is_multiple_of(6) {
                    return Err(ConnError(Reason::FRAME_SIZE_ERROR, "SETTINGS length"));
                }
                self.count(Flood::Settings)?;
                self.on_settings(p)
            }
            frame::PUSH_PROMISE => Err(ConnError(Reason::PROTOCOL_ERROR, "PUSH_PROMISE")),
            frame::PING => {
                if head.stream != 0 {
                    return Err(ConnError(Reason::PROTOCOL_ERROR, "PING on a stream"));
                }
                if p.len() != 8 {
                    return Err(ConnError(Reason::FRAME_SIZE_ERROR, "PING length"));
                }
                let payload: [u8; 8] = p.try_into().unwrap_or_default();
                if head.has(frame::FLAG_ACK) {
                    self.on_pong(payload);
                } else {
                    self.count(Flood::Ping)?;
                    frame::put_ping(&mut self.out, true, payload);
                    self.wake_writer();
                }
                Ok(())
            }
            frame::GOAWAY => {
                if head.stream != 0 {
                    return Err(ConnError(Reason::PROTOCOL_ERROR, "GOAWAY on a stream"));
                }
                if p.len() < 8 {
                    return Err(ConnError(Reason::FRAME_SIZE_ERROR, "GOAWAY length"));
                }
                let last = u32::from_be_bytes([p[0], p[1], p[2], p[3]]) & frame::MAX_WINDOW;
                let code = u32::from_be_bytes([p[4], p[5], p[6], p[7]]);
                self.on_goaway(last, Reason(code));
                Ok(())
            }
            frame::WINDOW_UPDATE => {
                if p.len() != 4 {
                    return Err(ConnError(Reason::FRAME_SIZE_ERROR, "WINDOW_UPDATE length"));
                }
                let inc = u32::from_be_bytes([p[0], p[1], p[2], p[3]]) & frame::MAX_WINDOW;
                self.on_window_update(head.stream, inc)
            }
            // Unknown frame types are ignored (RFC 9113 §4.1).
            _ => Ok(()),
        }
    }

    fn on_settings(&mut self, p: &[u8]) -> Result<(), ConnError> {
        for param in p.chunks_exact(6) {
            let id = u16::from_be_bytes([param[0], param[1]]);
            let value = u32::from_be_bytes([param[2], param[3], param[4], param[5]]);
            match id {
                frame::SETTINGS_ENABLE_PUSH if value > 1 => {
                    return Err(ConnError(Reason::PROTOCOL_ERROR, "ENABLE_PUSH not 0 or 1"))
                }
                frame::SETTINGS_HEADER_TABLE_SIZE => {
                    // Our encoder's table follows it from the next header block we send.
                    self.encoder.set_peer_table_size(value as usize);
                }
                frame::SETTINGS_MAX_CONCURRENT_STREAMS => {
                    self.peer.max_streams = value;
                    self.wake_ready();
                }
                frame::SETTINGS_INITIAL_WINDOW_SIZE => {
                    if value > frame::MAX_WINDOW {
                        return Err(ConnError(
                            Reason::FLOW_CONTROL_ERROR,
                            "INITIAL_WINDOW_SIZE above 2^31-1",
                        ));
                    }
                    let delta = value as i64 - self.peer.initial_window as i64;
                    self.peer.initial_window = value;
                    if delta != 0 {
                        for key in self.open_keys() {
                            let st = self.stream(key);
                            st.send_window += delta;
                            if st.send_window > frame::MAX_WINDOW as i64 {
                                return Err(ConnError(
                                    Reason::FLOW_CONTROL_ERROR,
                                    "window above 2^31-1",
                                ));
                            }
                            if delta > 0 {
                                if let Some(w) = st.send_waker.take() {
                                    w.wake();
                                }
                            }
                        }
                    }
                }
                frame::SETTINGS_MAX_FRAME_SIZE => {
                    if !(frame::DEFAULT_MAX_FRAME..=0xff_ffff).contains(&value) {
                        return Err(ConnError(
                            Reason::PROTOCOL_ERROR,
                            "MAX_FRAME_SIZE out of range",
                        ));
                    }
                    self.peer.max_frame = value as usize;
                }
                _ => {}
            }
        }
        frame::put_settings_ack(&mut self.out);
        self.wake_writer();
        if !self.handshake.got_settings {
            self.handshake.got_settings = true;
            if let Some(w) = self.handshake.waker.take() {
                w.wake();
            }
        }
        Ok(())
    }

    fn on_pong(&mut self, payload: [u8; 8]) {
        if payload == GOAWAY_PING && self.shutdown.goaway == Goaway::Announced {
            let last = self.last_peer_id;
            self.shutdown.goaway = Goaway::Sent(last);
            frame::put_goaway(&mut self.out, last, 0, &[]);
            self.wake_writer();
            self.close_if_idle();
        } else if payload == USER_PING && self.ping.in_flight {
            self.ping.in_flight = false;
            self.ping.pong = true;
            if let Some(w) = self.ping.waker.take() {
                w.wake();
            }
        }
    }

    fn on_goaway(&mut self, last: u32, reason: Reason) {
        if let Some(observer) = &self.observer {
            observer.read_goaway(last, reason.0);
        }
        let last = self.shutdown.goaway_recv.map_or(last, |(l, _)| l.min(last));
        self.shutdown.goaway_recv = Some((last, reason));
        // Our streams above `last` were never processed: they fail, retryable elsewhere.
        let mine = |id: u32, role: Role| (id % 2 == 1) == (role == Role::Client);
        let role = self.role;
        let doomed: Vec<usize> = self
            .table
            .iter()
            .flat_map(|t| t.ids.iter())
            .filter(|(&id, _)| mine(id, role) && id > last)
            .map(|(_, &key)| key)
            .collect();
        for key in doomed {
            let st = self.stream(key);
            st.error = Some(Error::GoAway {
                reason,
                remote: true,
            });
            st.wake_all();
            self.maybe_close(key);
        }
        self.close_if_idle();
    }

    fn on_window_update(&mut self, id: u32, inc: u32) -> Result<(), ConnError> {
        if id == 0 {
            if inc == 0 {
                return Err(ConnError(Reason::PROTOCOL_ERROR, "WINDOW_UPDATE of 0"));
            }
            self.flow.send_window += inc as i64;
            if self.flow.send_window > frame::MAX_WINDOW as i64 {
                return Err(ConnError(
                    Reason::FLOW_CONTROL_ERROR,
                    "connection window above 2^31-1",
                ));
            }
            let t = self.t();
            for key in std::mem::take(&mut t.conn_waiters) {
                if let Some(st) = t.slots[key].as_mut() {
                    st.waiting_conn_window = false;
                    if let Some(w) = st.send_waker.take() {
                        w.wake();
                    }
                }
            }
            return Ok(());
        }
        let Some(key) = self.key_of(id) else {
            if self.is_idle(id) {
                return Err(ConnError(
                    Reason::PROTOCOL_ERROR,
                    "WINDOW_UPDATE on an idle stream",
                ));
            }
            return Ok(());
        };
        if inc == 0 {
            return self.stream_error(id, Reason::PROTOCOL_ERROR);
        }
        let st = self.stream(key);
        st.send_window += inc as i64;
        if st.send_window > frame::MAX_WINDOW as i64 {
            return self.stream_error(id, Reason::FLOW_CONTROL_ERROR);
        }
        if let Some(w) = st.send_waker.take() {
            w.wake();
        }
        Ok(())
    }

    fn on_rst(&mut self, id: u32, reason: Reason) -> Result<(), ConnError> {
        let Some(key) = self.key_of(id) else {
            if self.is_idle(id) {
                return Err(ConnError(
                    Reason::PROTOCOL_ERROR,
                    "RST_STREAM on an idle stream",
                ));
            }
            return Ok(());
        };
        let role = self.role;
        let st = self.stream(key);
        st.reset = Some((reason, true));
        let early = role == Role::Server && !st.sent_head;
        st.wake_all();
        self.maybe_close(key);
        if early {
            self.guard.early_resets += 1;
            if self.guard.early_resets > MAX_EARLY_RESETS {
                return Err(self.flooded(Flood::RapidReset));
            }
        }
        Ok(())
    }

    fn on_data(&mut self, head: Head, mut payload: Bytes) -> Result<(), ConnError> {
        if head.stream == 0 {
            return Err(ConnError(Reason::PROTOCOL_ERROR, "DATA on stream 0"));
        }
        let len = head.len;
        // SETTINGS never change the connection window: what the peer may send is known
        // exactly, whether it has acknowledged our SETTINGS or not.
        self.flow.recv_window -= len as i64;
        if self.flow.recv_window < 0 {
            self.flow_control_broken();
            return Err(ConnError(
                Reason::FLOW_CONTROL_ERROR,
                "connection window exceeded",
            ));
        }
        let padding = if head.has(frame::FLAG_PADDED) {
            let Some(&pad) = payload.first() else {
                return Err(ConnError(Reason::FRAME_SIZE_ERROR, "DATA padding"));
            };
            if pad as usize >= payload.len() {
                return Err(ConnError(Reason::PROTOCOL_ERROR, "DATA padding too long"));
            }
            payload.truncate(payload.len() - pad as usize);
            payload.advance(1);
            len - payload.len() as u32
        } else {
            0
        };
        let end = head.has(frame::FLAG_END_STREAM);
        if payload.is_empty() && !end {
            self.count(Flood::EmptyData)?;
        }
        let Some(key) = self.key_of(head.stream) else {
            if self.is_idle(head.stream) {
                return Err(ConnError(Reason::PROTOCOL_ERROR, "DATA on an idle stream"));
            }
            // A closed stream: give the bytes back at once.
            self.release_connection(len);
            return self.on_closed_stream(head.stream, false);
        };
        // Until the peer acknowledges our SETTINGS it may still count on the default stream
        // window (RFC 9113 §6.9.2), if ours is smaller.
        let slack = if self.handshake.settings_acked {
            0
        } else {
            frame::DEFAULT_WINDOW.saturating_sub(self.local.stream_window) as i64
        };
        let n = payload.len() as u32;
        let st = self.stream(key);
        let refused = if st.recv_end {
            Some(Reason::STREAM_CLOSED)
        } else if !st.got_head {
            Some(Reason::PROTOCOL_ERROR)
        } else {
            st.recv_window -= len as i64;
            if st.recv_window < -slack {
                Some(Reason::FLOW_CONTROL_ERROR)
            } else if st.content_left != NO_LENGTH
                && (n as u64 > st.content_left || (end && n as u64 != st.content_left))
            {
                // The body does not match its content-length: malformed (§8.1.1).
                Some(Reason::PROTOCOL_ERROR)
            } else {
                None
            }
        };
        if let Some(reason) = refused {
            self.release_connection(len);
            if reason == Reason::FLOW_CONTROL_ERROR {
                self.flow_control_broken();
            }
            return self.stream_error(head.stream, reason);
        }
        let on_receipt = self.local.connection_window_on_receipt;
        let st = self.stream(key);
        if st.content_left != NO_LENGTH {
            st.content_left -= n as u64;
        }
        if end {
            st.recv_end = true;
        }
        if st.draining {
            // The response is complete and nobody reads the request any more: discard it,
            // and give its window back, up to a window's worth; past that, stop the client.
            st.pending_update += len;
            let overdrawn = st.drain_left < len;
            st.drain_left = st.drain_left.saturating_sub(len);
            self.release_connection(len);
            if overdrawn {
                self.reset(key, Reason::NO_ERROR);
            } else if end {
                self.maybe_close(key);
            } else {
                self.send_stream_update(key);
            }
            return Ok(());
        }
        st.unreleased += n;
        if n > 0 || end {
            st.recv.push_back(In::Data(payload, end));
        }
        if let Some(w) = st.recv_waker.take() {
            w.wake();
        }
        if padding > 0 {
            // Padding is flow-controlled but never handed out: release it now.
            st.pending_update += padding;
        }
        if on_receipt {
            self.release_connection(len);
        } else if padding > 0 {
            self.release_connection(padding);
        }
        if end {
            self.maybe_close(key);
        }
        Ok(())
    }

    /// The peer sent more than a window allowed.
    fn flow_control_broken(&self) {
        if let Some(observer) = &self.observer {
            observer.flow_control_error();
        }
    }

    fn on_headers(&mut self, head: Head, mut payload: Bytes) -> Result<(), ConnError> {
        if head.stream == 0 {
            return Err(ConnError(Reason::PROTOCOL_ERROR, "HEADERS on stream 0"));
        }
        if head.has(frame::FLAG_PADDED) {
            let Some(&pad) = payload.first() else {
                return Err(ConnError(Reason::FRAME_SIZE_ERROR, "HEADERS padding"));
            };
            if pad as usize >= payload.len() {
                return Err(ConnError(
                    Reason::PROTOCOL_ERROR,
                    "HEADERS padding too long",
                ));
            }
            payload.truncate(payload.len() - pad as usize);
            payload.advance(1);
        }
        let mut self_dependent = false;
        if head.has(frame::FLAG_PRIORITY) {
            if payload.len() < 5 {
                return Err(ConnError(Reason::FRAME_SIZE_ERROR, "HEADERS priority"));
            }
            let depends_on = u32::from_be_bytes([payload[0], payload[1], payload[2], payload[3]]);
            self_dependent = depends_on & frame::MAX_WINDOW == head.stream;
            payload.advance(5);
        }
        let end_stream = head.has(frame::FLAG_END_STREAM);
        if head.has(frame::FLAG_END_HEADERS) {
            return self.on_header_block(head.stream, payload, end_stream, self_dependent);
        }
        self.partial = Some(Box::new(Partial {
            stream: head.stream,
            end_stream,
            self_dependent,
            block: BytesMut::from(&payload[..]),
            frames: 0,
        }));
        Ok(())
    }

    fn on_continuation(&mut self, head: Head, payload: Bytes) -> Result<(), ConnError> {
        let limit = self.local.max_header_list as usize * 2 + (64 << 10);
        let Some(p) = self.partial.as_mut() else {
            return Err(ConnError(
                Reason::PROTOCOL_ERROR,
                "CONTINUATION without HEADERS",
            ));
        };
        p.frames += 1;
        p.block.extend_from_slice(&payload);
        let too_large = p.frames > MAX_CONTINUATIONS || p.block.len() > limit;
        if too_large {
            return Err(self.flooded(Flood::HeaderBlock));
        }
        if payload.is_empty() {
            self.count(Flood::EmptyContinuation)?;
        }
        if !head.has(frame::FLAG_END_HEADERS) {
            return Ok(());
        }
        let p = self.partial.take().expect("checked above");
        self.on_header_block(p.stream, p.block.freeze(), p.end_stream, p.self_dependent)
    }

    fn on_header_block(
        &mut self,
        id: u32,
        block: Bytes,
        end: bool,
        self_dependent: bool,
    ) -> Result<(), ConnError> {
        let mut fields = Fields::new();
        let mut size = 0usize;
        // Decoded whatever becomes of the stream: the HPACK context must stay in step.
        self.decoder
            .decode(&block, |f| {
                size += f.name.len() + f.value.len() + 32;
                fields.list.push(f);
            })
            .map_err(|_| ConnError(Reason::COMPRESSION_ERROR, "bad HPACK block"))?;
        if let Some(key) = self.key_of(id) {
            if self_dependent {
                return self.stream_error(id, Reason::PROTOCOL_ERROR);
            }
            return self.on_stream_headers(key, id, fields, end);
        }
        match self.role {
            Role::Client => {
                if id.is_multiple_of(2) || self.is_idle(id) {
                    return Err(ConnError(
                        Reason::PROTOCOL_ERROR,
                        "HEADERS on an idle stream",
                    ));
                }
                self.on_closed_stream(id, true)
            }
            Role::Server => {
                if id.is_multiple_of(2) {
                    return Err(ConnError(
                        Reason::PROTOCOL_ERROR,
                        "even stream id from a client",
                    ));
                }
                if id <= self.last_peer_id {
                    return self.on_closed_stream(id, true);
                }
                if id > self.last_peer_id + 2 {
                    self.guard.resets.skip(self.last_peer_id + 2, id - 2);
                }
                self.last_peer_id = id;
                if matches!(self.shutdown.goaway, Goaway::Sent(last) if id > last)
                    || self.shutdown.closing
                {
                    return Ok(());
                }
                if self_dependent {
                    // RFC 9113 §5.3.1: a stream cannot depend on itself.
                    return self.stream_error(id, Reason::PROTOCOL_ERROR);
                }
                if size > self.local.max_header_list as usize {
                    if let Some(observer) = &self.observer {
                        observer.refused(Refusal::HeaderList);
                    }
                    let mut answer = Fields::new();
                    answer.push(Bytes::from_static(b":status"), Bytes::from_static(b"431"));
                    self.write_head(id, &answer, true);
                    self.remember_reset(id);
                    // Counted with the streams reset for errors: a client that sends nothing
                    // else (an HPACK bomb, 64 MB decoded per block) is ended in time.
                    return self.count_error_reset();
                }
                let content_length = match check_fields(&fields, Block::Request) {
                    // A request that ends with its headers has an empty body (§8.1.1).
                    Ok(Some(n)) if end && n > 0 => {
                        return self.stream_error(id, Reason::PROTOCOL_ERROR)
                    }
                    Ok(n) => n,
                    Err(_) => return self.stream_error(id, Reason::PROTOCOL_ERROR),
                };
                if self.active >= self.local.max_concurrent_streams {
                    // Counted with the error resets: a client that ignores our
                    // SETTINGS_MAX_CONCURRENT_STREAMS and keeps opening streams (nothing makes
                    // a well-behaved one exceed it here: ours never shrinks) is ended in time.
                    if let Some(observer) = &self.observer {
                        observer.refused(Refusal::ConcurrentStreams);
                    }
                    return self.stream_error(id, Reason::REFUSED_STREAM);
                }
                let mut st = Stream::new(id, self.local.stream_window, self.peer.initial_window);
                st.got_head = true;
                st.recv_end = end;
                st.queued = true;
                st.content_left = content_length.unwrap_or(NO_LENGTH);
                let key = self.insert(st);
                let t = self.t();
                t.ids.insert(id, key);
                t.accept.push_back((key, fields, end));
                self.active += 1;
                if let Some(w) = self.accept_waker.take() {
                    w.wake();
                }
                Ok(())
            }
        }
    }

    /// DATA or HEADERS on a stream that is closed: ignored if we reset the stream (the peer
    /// sent it before it knew); a connection error PROTOCOL_ERROR if the peer never opened it
    /// but skipped its id (§5.1.1: ids only grow); otherwise STREAM_CLOSED (§5.1) — for
    /// HEADERS a connection error (the peer's HPACK state and ours may have parted), for DATA
    /// a stream error.
    fn on_closed_stream(&mut self, id: u32, headers: bool) -> Result<(), ConnError> {
        if self.guard.resets.ignores(id) {
            return Ok(());
        }
        if self.guard.resets.skipped(id) {
            return Err(ConnError(
                Reason::PROTOCOL_ERROR,
                "frame on a stream id the peer skipped",
            ));
        }
        if headers {
            return Err(ConnError(
                Reason::STREAM_CLOSED,
                "HEADERS on a closed stream",
            ));
        }
        self.stream_error(id, Reason::STREAM_CLOSED)
    }

    /// A header block on an open stream: a response head (client), or trailers.
    fn on_stream_headers(
        &mut self,
        key: usize,
        id: u32,
        fields: Fields,
        end: bool,
    ) -> Result<(), ConnError> {
        let role = self.role;
        let st = self.stream(key);
        if st.recv_end {
            return self.stream_error(id, Reason::STREAM_CLOSED);
        }
        if let Some(reason) = st.cancelled {
            // Abandoned by us before this answer: the peer has taken the stream, so the reset
            // we owe it goes now — unless the answer ended a stream whose request had ended.
            if end && st.send_end {
                st.recv_end = true;
                self.maybe_close(key);
            } else {
                self.reset(key, reason);
            }
            return Ok(());
        }
        if !st.got_head && role == Role::Client {
            let content_length = match check_fields(&fields, Block::Response) {
                Ok(n) => n,
                Err(_) => return self.stream_error(id, Reason::PROTOCOL_ERROR),
            };
            let status = fields.get(b":status").map(|s| s.as_ref()).unwrap_or(b"");
            if status.first() == Some(&b'1') {
                // Informational: the real response head is still to come.
                if end {
                    return self.stream_error(id, Reason::PROTOCOL_ERROR);
                }
                return Ok(());
            }
            // 204 and 304 responses, and responses to HEAD, announce a length they do not
            // carry; ringway sends no HEAD requests of its own.
            let bodiless = status == b"204" || status == b"304" || st.head_request;
            if !bodiless {
                if let Some(n) = content_length {
                    if end && n > 0 {
                        return self.stream_error(id, Reason::PROTOCOL_ERROR);
                    }
                    st.content_left = n;
                }
            }
            st.got_head = true;
            st.head = Some((fields, end));
        } else {
            if !end || check_fields(&fields, Block::Trailers).is_err() {
                return self.stream_error(id, Reason::PROTOCOL_ERROR);
            }
            if st.content_left != NO_LENGTH && st.content_left != 0 {
                // The body ended short of its content-length (§8.1.1).
                return self.stream_error(id, Reason::PROTOCOL_ERROR);
            }
            if !st.draining {
                st.recv.push_back(In::Trailers(fields));
            }
        }
        if end {
            st.recv_end = true;
        }
        if let Some(w) = st.recv_waker.take() {
            w.wake();
        }
        if end {
            self.maybe_close(key);
        }
        Ok(())
    }
}

//! The shard's call tasks, reused call after call.
//!
//! Spawning a task per call costs an allocation the size of the call's future (a few KiB)
//! and its copy. Instead a task that finished its call parks itself here; the next call is
//! handed to a parked task, and a new one is spawned only when none is free. So a warm shard
//! keeps about as many tasks as it ever had calls in flight at once, up to [`MAX_IDLE`].

use std::cell::{Cell, RefCell};
use std::future::poll_fn;
use std::rc::Rc;
use std::task::{Poll, Waker};

use super::{CallGuard, Handler, Peer, Server};
use crate::wire::Incoming;

/// Parked tasks kept per shard; a task finishing beyond it ends.
const MAX_IDLE: usize = 4096;

/// One call to serve, with the hold on its client connection.
pub(super) struct Call {
    pub incoming: Incoming,
    pub guard: CallGuard,
    pub peer: Peer,
}

/// A parked task's mailbox.
#[derive(Default)]
struct Slot {
    call: Cell<Option<Call>>,
    waker: Cell<Option<Waker>>,
}

/// The shard's parked call tasks.
#[derive(Default)]
pub struct Workers {
    idle: RefCell<Vec<Rc<Slot>>>,
}

impl Workers {
    /// Serves `call` on a parked task, or on a new one.
    pub(super) fn dispatch<H: Handler>(&self, server: &Rc<Server<H>>, call: Call) {
        match self.idle.borrow_mut().pop() {
            Some(slot) => {
                slot.call.set(Some(call));
                if let Some(waker) = slot.waker.take() {
                    waker.wake();
                }
            }
            None => {
                monoio::spawn(work(server.clone(), call));
            }
        }
    }
}

/// A call task: serves its call, then parks for the next one.
async fn work<H: Handler>(server: Rc<Server<H>>, first: Call) {
    let slot = Rc::new(Slot::default());
    let mut call = first;
    loop {
        let Call {
            incoming,
            guard,
            peer,
        } = call;
        server.handler.clone().serve(incoming, peer).await;
        drop(guard);
        {
            let mut idle = server.workers.idle.borrow_mut();
            if idle.len() >= MAX_IDLE {
                return;
            }
            idle.push(slot.clone());
        }
        call = poll_fn(|cx| match slot.call.take() {
            Some(call) => Poll::Ready(call),
            None => {
                slot.waker.set(Some(cx.waker().clone()));
                Poll::Pending
            }
        })
        .await;
    }
}

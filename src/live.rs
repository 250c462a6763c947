//! Values that reloads replace while the shards run: written by the reloading thread, read by
//! each shard through its [`Local`] view — one atomic load per read, the mutex only after a
//! reload.

use std::cell::{Cell, RefCell};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// A value replaced by reloads, read by shards when they need it (a TLS config once per
/// handshake, the configuration once per control tick).
pub struct Swap<T> {
    generation: AtomicU64,
    current: Mutex<Arc<T>>,
}

impl<T> Swap<T> {
    pub fn new(value: T) -> Swap<T> {
        Swap {
            generation: AtomicU64::new(0),
            current: Mutex::new(Arc::new(value)),
        }
    }

    pub fn store(&self, value: T) {
        if let Ok(mut current) = self.current.lock() {
            *current = Arc::new(value);
        }
        self.generation.fetch_add(1, Ordering::Release);
    }

    pub fn load(&self) -> Arc<T> {
        match self.current.lock() {
            Ok(current) => current.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }
}

/// A shard's view of a [`Swap`]: the `Arc` it last saw and that value's generation.
pub struct Local<T> {
    swap: Arc<Swap<T>>,
    seen: Cell<u64>,
    current: RefCell<Arc<T>>,
}

impl<T> Local<T> {
    pub fn new(swap: Arc<Swap<T>>) -> Local<T> {
        let seen = swap.generation.load(Ordering::Acquire);
        let current = swap.load();
        Local {
            swap,
            seen: Cell::new(seen),
            current: RefCell::new(current),
        }
    }

    /// The value, when a reload replaced it since the last look (one atomic load otherwise).
    pub fn changed(&self) -> Option<Arc<T>> {
        let generation = self.swap.generation.load(Ordering::Acquire);
        if generation == self.seen.get() {
            return None;
        }
        *self.current.borrow_mut() = self.swap.load();
        self.seen.set(generation);
        Some(self.current.borrow().clone())
    }

    /// The current value: one atomic load, and the mutex only after a reload.
    pub fn get(&self) -> Arc<T> {
        self.changed();
        self.current.borrow().clone()
    }
}

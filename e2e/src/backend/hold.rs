//! Holding callbacks: the backend keeps requests of one kind waiting, for a while or until the
//! test lets them go, and counts how many waited at once, which is how many the gateway had in
//! flight.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::watch;

use super::CallbackKind;

/// How long a held request waits before it is answered.
#[derive(Clone, Copy, Debug)]
pub enum Hold {
    /// Until [`HeldCallbacks::release`].
    UntilReleased,
    /// This long, like a slow backend.
    For(Duration),
}

/// Requests of one kind that the backend holds.
#[derive(Clone)]
pub struct HeldCallbacks {
    state: Arc<HoldState>,
}

struct HoldState {
    kind: CallbackKind,
    hold: Hold,
    released: watch::Sender<bool>,
    now: AtomicUsize,
    most: AtomicUsize,
}

impl HeldCallbacks {
    pub(super) fn new(kind: CallbackKind, hold: Hold) -> Self {
        Self {
            state: Arc::new(HoldState {
                kind,
                hold,
                released: watch::Sender::new(false),
                now: AtomicUsize::new(0),
                most: AtomicUsize::new(0),
            }),
        }
    }

    pub(super) fn kind(&self) -> CallbackKind {
        self.state.kind
    }

    /// Answers every held request, and every later one without holding it.
    pub fn release(&self) {
        self.state.released.send_replace(true);
    }

    /// Requests being held right now.
    pub fn held_now(&self) -> usize {
        self.state.now.load(Ordering::SeqCst)
    }

    /// The most requests held at the same time so far.
    pub fn most_at_once(&self) -> usize {
        self.state.most.load(Ordering::SeqCst)
    }

    /// Holds one request (the caller already recorded it).
    pub(super) async fn hold(&self) {
        let state = &self.state;
        let mut released = state.released.subscribe();
        if *released.borrow() {
            return;
        }
        let now = state.now.fetch_add(1, Ordering::SeqCst) + 1;
        state.most.fetch_max(now, Ordering::SeqCst);
        // Counted down however the wait ends, also when the gateway gives up on the request.
        let _held = HeldOne(&state.now);
        match state.hold {
            Hold::For(duration) => tokio::time::sleep(duration).await,
            Hold::UntilReleased => {
                let _ = released.wait_for(|released| *released).await;
            }
        }
    }
}

struct HeldOne<'a>(&'a AtomicUsize);

impl Drop for HeldOne<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

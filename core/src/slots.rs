//! A counting semaphore for one invocation: at most `n` holders at a time, the rest wait in order.
//!
//! The consumer uses it to keep concurrent deliveries under the Workers limit of six simultaneous open
//! connections per invocation. Beyond it, `fetch` waits for a free connection, and a delivery
//! timer started before the request is even sent would time out deliveries that never reached
//! their destination (and use up their attempts). All holders live in one invocation's I/O
//! context, so waking one from another is allowed.

use futures_channel::oneshot;
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;

pub struct Slots {
    free: Cell<usize>,
    waiting: RefCell<VecDeque<oneshot::Sender<()>>>,
}

/// A held slot; dropping it hands the slot to the next waiter.
pub struct Slot<'a>(&'a Slots);

impl Slots {
    pub fn new(n: usize) -> Self {
        Slots { free: Cell::new(n), waiting: RefCell::default() }
    }

    pub async fn acquire(&self) -> Slot<'_> {
        if self.free.get() > 0 {
            self.free.set(self.free.get() - 1);
            return Slot(self);
        }
        let (tx, rx) = oneshot::channel();
        self.waiting.borrow_mut().push_back(tx);
        // A slot handed over arrives here; a dropped sender cannot happen while `self` lives,
        // and either way the slot is ours now.
        let _ = rx.await;
        Slot(self)
    }

    fn release(&self) {
        loop {
            let next = self.waiting.borrow_mut().pop_front();
            match next {
                // Handed straight over; a waiter that went away passes it on to the next.
                Some(tx) => {
                    if tx.send(()).is_ok() {
                        return;
                    }
                }
                None => {
                    self.free.set(self.free.get() + 1);
                    return;
                }
            }
        }
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.0.release();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_executor::LocalPool;
    use futures_util::task::LocalSpawnExt;
    use std::rc::Rc;

    #[test]
    fn at_most_n_holders_and_waiters_served_in_order() {
        let slots = Rc::new(Slots::new(2));
        let log = Rc::new(RefCell::new(Vec::new()));
        let held = Rc::new(Cell::new(0usize));
        let peak = Rc::new(Cell::new(0usize));
        let mut pool = LocalPool::new();
        let (gates_tx, gates_rx): (Vec<_>, Vec<_>) = (0..5).map(|_| oneshot::channel::<()>()).unzip();
        for (i, gate) in gates_rx.into_iter().enumerate() {
            let (slots, log, held, peak) = (slots.clone(), log.clone(), held.clone(), peak.clone());
            pool.spawner()
                .spawn_local(async move {
                    let _slot = slots.acquire().await;
                    held.set(held.get() + 1);
                    peak.set(peak.get().max(held.get()));
                    log.borrow_mut().push(i);
                    let _ = gate.await;
                    held.set(held.get() - 1);
                })
                .unwrap();
        }
        pool.run_until_stalled();
        assert_eq!(*log.borrow(), [0, 1], "two slots, two holders");
        let mut gates = gates_tx.into_iter();
        gates.next().unwrap().send(()).unwrap();
        pool.run_until_stalled();
        assert_eq!(*log.borrow(), [0, 1, 2], "a released slot goes to the first waiter");
        for gate in gates {
            let _ = gate.send(());
            pool.run_until_stalled();
        }
        assert_eq!(*log.borrow(), [0, 1, 2, 3, 4]);
        assert_eq!(peak.get(), 2);
        assert_eq!(slots.free.get(), 2, "every slot comes back");
    }

    #[test]
    fn a_waiter_that_went_away_passes_its_slot_on() {
        let slots = Slots::new(1);
        let mut pool = LocalPool::new();
        let first = pool.run_until(slots.acquire());
        {
            // A waiter that gives up before being served.
            let mut waiting = Box::pin(slots.acquire());
            assert!(pool.run_until(async { futures_util::poll!(waiting.as_mut()) }).is_pending());
        }
        drop(first);
        assert_eq!(slots.free.get(), 1, "nobody is waiting any more: the slot is free again");
    }
}

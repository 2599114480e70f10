//! The way a response head travels from an application thread back to the reactor task
//! that waits for it, with at most one reactor wake-up per batch of responses.
//!
//! Waking a task of a tokio reactor from another thread writes to the reactor's eventfd,
//! a system call per response with a one-shot channel, even when the reactor is already
//! awake or many responses are done before it runs. Here application threads drop their
//! replies in a shared mailbox, and only the first reply of a batch wakes the reactor:
//! its courier task then wakes the waiting tasks, locally, for free.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, PoisonError};
use std::task::{Context, Poll, Waker};

use super::Response;
use crate::sync::{AtomicBool, Mutex, MutexGuard, Ordering};

/// One executor's replies in transit, and the courier that hands them out.
#[derive(Default)]
pub struct Mailbox {
    delivered: Mutex<Vec<Arc<Slot>>>,
    /// True while a courier wake-up is on its way: later replies need not wake it again.
    armed: AtomicBool,
    courier: Mutex<Option<Waker>>,
    courier_started: AtomicBool,
}

#[derive(Default)]
struct Slot {
    state: Mutex<SlotState>,
}

#[derive(Default)]
struct SlotState {
    response: Option<Response>,
    sender_gone: bool,
    receiver_gone: bool,
    receiver: Option<Waker>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A new reply channel whose deliveries go through `mailbox`.
pub fn channel(mailbox: &Arc<Mailbox>) -> (ReplySender, ReplyReceiver) {
    let slot = Arc::new(Slot::default());
    let sender = ReplySender {
        slot: Some(Arc::clone(&slot)),
        mailbox: Arc::clone(mailbox),
    };
    let receiver = ReplyReceiver {
        slot,
        mailbox: Arc::clone(mailbox),
    };
    (sender, receiver)
}

/// The application thread's end: sends one response, or, dropped unsent, tells the
/// receiver that none will come.
pub struct ReplySender {
    slot: Option<Arc<Slot>>,
    mailbox: Arc<Mailbox>,
}

impl ReplySender {
    /// Hands `response` over; fails (dropping it) if the receiver is gone: the client
    /// left.
    pub fn send(mut self, response: Response) -> Result<(), ReceiverGone> {
        let Some(slot) = self.slot.take() else {
            return Err(ReceiverGone);
        };
        {
            let mut state = lock(&slot.state);
            if state.receiver_gone {
                return Err(ReceiverGone);
            }
            state.response = Some(response);
        }
        self.mailbox.deliver(slot);
        Ok(())
    }
}

impl Drop for ReplySender {
    fn drop(&mut self) {
        if let Some(slot) = self.slot.take() {
            lock(&slot.state).sender_gone = true;
            self.mailbox.deliver(slot);
        }
    }
}

impl Mailbox {
    fn deliver(&self, slot: Arc<Slot>) {
        lock(&self.delivered).push(slot);
        if !self.armed.swap(true, Ordering::AcqRel) {
            if let Some(courier) = lock(&self.courier).as_ref() {
                courier.wake_by_ref();
            }
        }
    }

    /// Starts the courier on the current runtime, once.
    fn start_courier(self: &Arc<Self>) {
        // Every receiver poll asks: a plain load keeps the common answer a read.
        if self.courier_started.load(Ordering::Acquire)
            || self.courier_started.swap(true, Ordering::AcqRel)
        {
            return;
        }
        let mailbox = Arc::clone(self);
        tokio::spawn(std::future::poll_fn(move |cx| mailbox.run_courier(cx)));
    }

    /// One poll of the courier task: hands out the delivered batch, and ends when no
    /// receiver (nor the executor) holds the mailbox any more.
    fn run_courier(self: &Arc<Self>, cx: &Context<'_>) -> Poll<()> {
        if Arc::strong_count(self) == 1 {
            return Poll::Ready(());
        }
        match &mut *lock(&self.courier) {
            Some(waker) => waker.clone_from(cx.waker()),
            empty @ None => *empty = Some(cx.waker().clone()),
        }
        // Disarm before taking the batch: a reply delivered after this point wakes the
        // courier again, one delivered before is in the batch.
        self.armed.store(false, Ordering::SeqCst);
        let batch = std::mem::take(&mut *lock(&self.delivered));
        for slot in batch {
            if let Some(receiver) = lock(&slot.state).receiver.take() {
                receiver.wake();
            }
        }
        Poll::Pending
    }
}

/// The front end's end: resolves to the response, or to `Err` if the application thread
/// let the request go without one.
pub struct ReplyReceiver {
    slot: Arc<Slot>,
    mailbox: Arc<Mailbox>,
}

/// Nobody waits for the response any more.
#[derive(Debug)]
pub struct ReceiverGone;

/// The application thread dropped the request without a response.
#[derive(Debug)]
pub struct NoReply;

impl Future for ReplyReceiver {
    type Output = Result<Response, NoReply>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        this.mailbox.start_courier();
        let mut state = lock(&this.slot.state);
        if let Some(response) = state.response.take() {
            return Poll::Ready(Ok(response));
        }
        if state.sender_gone {
            return Poll::Ready(Err(NoReply));
        }
        match &mut state.receiver {
            Some(waker) => waker.clone_from(cx.waker()),
            None => state.receiver = Some(cx.waker().clone()),
        }
        Poll::Pending
    }
}

impl Drop for ReplyReceiver {
    fn drop(&mut self) {
        let mut state = lock(&self.slot.state);
        state.receiver_gone = true;
        state.receiver = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(status: u16) -> Response {
        super::super::error_response(http::StatusCode::from_u16(status).unwrap(), "test")
    }

    #[tokio::test(flavor = "current_thread")]
    async fn replies_from_many_threads_all_reach_their_receivers() {
        let mailbox = Arc::new(Mailbox::default());
        let mut receivers = Vec::new();
        let mut senders = Vec::new();
        for index in 0..4000_u16 {
            let (sender, receiver) = channel(&mailbox);
            senders.push((200 + index % 300, sender));
            receivers.push((200 + index % 300, receiver));
        }
        let threads: Vec<_> = (0..8)
            .map(|thread| {
                let mine: Vec<_> = senders.drain(..senders.len() / (8 - thread)).collect();
                std::thread::spawn(move || {
                    for (status, sender) in mine {
                        sender.send(response(status)).unwrap();
                    }
                })
            })
            .collect();
        for (status, receiver) in receivers {
            assert_eq!(receiver.await.unwrap().status.as_u16(), status);
        }
        for thread in threads {
            thread.join().unwrap();
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_sender_dropped_unsent_ends_the_wait_with_an_error() {
        let mailbox = Arc::new(Mailbox::default());
        let (sender, receiver) = channel(&mailbox);
        std::thread::spawn(move || drop(sender));
        assert!(receiver.await.is_err());
    }

    #[test]
    fn sending_to_a_dropped_receiver_fails() {
        let mailbox = Arc::new(Mailbox::default());
        let (sender, receiver) = channel(&mailbox);
        drop(receiver);
        assert!(sender.send(response(200)).is_err());
    }
}

/// Every interleaving of application threads delivering replies with the reactor polling
/// the courier and the receivers (`make loom`). The test plays the reactor: it runs the
/// courier and the receivers when their wakers were woken, as tokio would.
#[cfg(all(test, ferrule_loom))]
mod loom_tests {
    use super::*;
    use crate::sync::WakeFlag as Flag;

    fn response(status: u16) -> Response {
        super::super::error_response(http::StatusCode::from_u16(status).unwrap(), "test")
    }

    /// Runs `senders` (one thread each) against one receiver per sender, and returns
    /// what the receivers resolved to. Fails if the reactor is left with nothing woken
    /// while a receiver still waits: a lost wake-up.
    fn reactor(senders: Vec<Box<dyn FnOnce(ReplySender) + Send>>) -> Vec<Result<u16, NoReply>> {
        let mailbox = Arc::new(Mailbox::default());
        // The test is the courier task: no tokio task is spawned.
        mailbox.courier_started.store(true, Ordering::SeqCst);
        let mut receivers = Vec::new();
        let mut threads = Vec::new();
        for send in senders {
            let (sender, receiver) = channel(&mailbox);
            receivers.push((receiver, Arc::new(Flag::default()), None));
            threads.push(loom::thread::spawn(move || send(sender)));
        }
        let courier = Arc::new(Flag::default());
        let courier_waker = Waker::from(Arc::clone(&courier));
        let poll_receivers = |receivers: &mut Vec<(ReplyReceiver, Arc<Flag>, Option<_>)>,
                              only_woken: bool| {
            for (receiver, flag, outcome) in receivers.iter_mut() {
                if outcome.is_some() || (only_woken && !flag.take()) {
                    continue;
                }
                let waker = Waker::from(Arc::clone(flag));
                if let Poll::Ready(result) =
                    Pin::new(receiver).poll(&mut Context::from_waker(&waker))
                {
                    *outcome = Some(result.map(|response: Response| response.status.as_u16()));
                }
            }
        };
        // The reactor's first round (the requests wait, then the courier starts) runs
        // while the application threads send.
        poll_receivers(&mut receivers, false);
        assert!(
            mailbox
                .run_courier(&Context::from_waker(&courier_waker))
                .is_pending()
        );
        for thread in threads {
            thread.join().unwrap();
        }
        while receivers.iter().any(|(_, _, outcome)| outcome.is_none()) {
            let courier_woken = courier.take();
            let receiver_woken = receivers.iter().any(|(_, flag, _)| flag.is_set());
            assert!(
                courier_woken || receiver_woken,
                "a receiver waits and nothing was woken"
            );
            if courier_woken {
                let _ = mailbox.run_courier(&Context::from_waker(&courier_waker));
            }
            poll_receivers(&mut receivers, true);
        }
        receivers
            .into_iter()
            .map(|(_, _, outcome)| outcome.unwrap())
            .collect()
    }

    #[test]
    fn loom_replies_from_two_threads_reach_their_receivers() {
        loom::model(|| {
            let outcomes = reactor(vec![
                Box::new(|sender| sender.send(response(201)).unwrap()),
                Box::new(|sender| sender.send(response(202)).unwrap()),
            ]);
            assert!(matches!(outcomes[..], [Ok(201), Ok(202)]));
        });
    }

    #[test]
    fn loom_a_sender_dropped_unsent_ends_the_wait() {
        loom::model(|| {
            let outcomes = reactor(vec![Box::new(drop)]);
            assert!(matches!(outcomes[..], [Err(NoReply)]));
        });
    }

    #[test]
    fn loom_a_reply_to_a_receiver_dropped_meanwhile_is_delivered_at_most_once() {
        loom::model(|| {
            let mailbox = Arc::new(Mailbox::default());
            mailbox.courier_started.store(true, Ordering::SeqCst);
            let (sender, receiver) = channel(&mailbox);
            let thread = loom::thread::spawn(move || sender.send(response(200)).is_ok());
            drop(receiver);
            let sent = thread.join().unwrap();
            // A reply that found its receiver gone is refused and goes nowhere; one sent
            // before goes through the mailbox once (the courier then finds no waker).
            assert_eq!(lock(&mailbox.delivered).len(), usize::from(sent));
        });
    }
}

//! The budget of request bytes the server holds at once, taken from each message's encoded
//! length before it is decoded: over the budget a request is refused at once with
//! RESOURCE_EXHAUSTED instead of being decoded and queued behind the others.
//!
//! A unary call holds its bytes until its handler has answered. A streaming call holds
//! the bytes of its latest message until the next one is read or the stream ends.

use crate::metrics::Metrics;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use tonic::Status;

/// How every refusal over the budget begins.
pub const OVER_BUDGET: &str = "server busy: a request of ";

/// Request bytes in flight, against a capacity.
#[derive(Debug)]
pub struct RequestBudget {
    capacity: usize,
    in_use: AtomicUsize,
    metrics: Arc<Metrics>,
}

impl RequestBudget {
    /// A budget of `capacity` bytes, reported in `metrics`.
    pub fn new(capacity: usize, metrics: Arc<Metrics>) -> Arc<Self> {
        Arc::new(RequestBudget { capacity, in_use: AtomicUsize::new(0), metrics })
    }

    /// Bytes held now.
    pub fn in_use(&self) -> usize {
        self.in_use.load(Ordering::Acquire)
    }

    /// Takes `bytes` from the budget, or refuses with RESOURCE_EXHAUSTED when they do not
    /// fit beside what is held.
    pub fn try_take(self: &Arc<Self>, bytes: usize) -> Result<Ticket, Status> {
        let taken = self.in_use.fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
            held.checked_add(bytes).filter(|&total| total <= self.capacity)
        });
        match taken {
            Ok(_) => {
                self.metrics.request_bytes_in_flight.add(bytes as i64);
                Ok(Ticket { budget: self.clone(), bytes })
            }
            Err(held) => {
                self.metrics.request_bytes_refused.inc();
                Err(Status::resource_exhausted(format!(
                    "{OVER_BUDGET}{bytes} bytes does not fit: {held} of the {} request bytes the server holds at \
                     once are in use; retry with backoff",
                    self.capacity
                )))
            }
        }
    }
}

/// Bytes taken from a budget, given back on drop.
#[derive(Debug)]
pub struct Ticket {
    budget: Arc<RequestBudget>,
    bytes: usize,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.budget.in_use.fetch_sub(self.bytes, Ordering::AcqRel);
        self.budget.metrics.request_bytes_in_flight.sub(self.bytes as i64);
    }
}

tokio::task_local! {
    /// The call being served, seen by the codec that generated code creates for it.
    static CALL: Call;
}

/// One call being served: the budget and the bytes it holds.
#[derive(Debug, Clone)]
pub(crate) struct Call {
    budget: Arc<RequestBudget>,
    held: Arc<Mutex<Option<Ticket>>>,
    /// The call's trace, when it is traced.
    pub(crate) trace: Option<Arc<crate::traces::RequestTrace>>,
}

impl Call {
    /// A new call against `budget`, holding nothing yet.
    pub(crate) fn new(budget: Arc<RequestBudget>) -> Self {
        Call { budget, held: Arc::new(Mutex::new(None)), trace: None }
    }

    /// The call whose handler is running on this task, if any.
    pub(crate) fn current() -> Option<Call> {
        CALL.try_with(Call::clone).ok()
    }

    /// The trace of the call whose handler is running on this task, when it is traced.
    pub(crate) fn current_trace() -> Option<Arc<crate::traces::RequestTrace>> {
        CALL.try_with(|c| c.trace.clone()).ok().flatten()
    }

    /// Runs `f` (the handler of this call) with the call visible to its codec. The call
    /// holds its bytes at least until `f` ends.
    pub(crate) async fn scope<F: Future>(self, f: F) -> F::Output {
        CALL.scope(self, f).await
    }

    /// Admits a message of `bytes` encoded bytes: the call's previous message is let go
    /// (a stream has moved on from it), then the new one is taken from the budget.
    pub(crate) fn admit(&self, bytes: usize) -> Result<(), Status> {
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        *held = None;
        *held = Some(self.budget.try_take(bytes)?);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_refuses_what_does_not_fit_and_takes_back_on_drop() {
        let metrics = Arc::new(Metrics::new());
        let budget = RequestBudget::new(100, metrics.clone());
        let a = budget.try_take(60).unwrap();
        let err = budget.try_take(41).unwrap_err();
        assert_eq!(err.code(), tonic::Code::ResourceExhausted);
        assert_eq!(
            err.message(),
            "server busy: a request of 41 bytes does not fit: 60 of the 100 request bytes the server holds at once \
             are in use; retry with backoff"
        );
        let b = budget.try_take(40).unwrap();
        assert_eq!(budget.in_use(), 100);
        assert_eq!(metrics.request_bytes_in_flight.get(), 100);
        drop((a, b));
        assert_eq!(budget.in_use(), 0);
        assert_eq!(metrics.request_bytes_in_flight.get(), 0);
        assert_eq!(metrics.request_bytes_refused.get(), 1);
        assert_eq!(budget.try_take(usize::MAX).unwrap_err().code(), tonic::Code::ResourceExhausted);
    }

    #[test]
    fn a_call_holds_only_its_latest_message() {
        let budget = RequestBudget::new(100, Arc::new(Metrics::new()));
        let call = Call::new(budget.clone());
        call.admit(70).unwrap();
        // The next message of the same stream replaces the first.
        call.admit(90).unwrap();
        assert_eq!(budget.in_use(), 90);
        let other = Call::new(budget.clone());
        assert_eq!(other.admit(20).unwrap_err().code(), tonic::Code::ResourceExhausted);
        drop(call);
        assert_eq!(budget.in_use(), 0);
        other.admit(20).unwrap();
        assert_eq!(budget.in_use(), 20);
    }
}

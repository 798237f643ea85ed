//! What clients can hold as a whole, not only per connection: open connections (in all and per
//! source address), the bytes of request bodies not yet finished, and the time a body may take
//! to arrive (quality.md, "Hostile input").

use std::collections::HashMap;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};

/// Open connections, in all and per source address.
pub(crate) struct Connections {
    max_total: usize,
    /// 0: no limit per address.
    per_ip: usize,
    total: AtomicUsize,
    counts: Mutex<HashMap<IpAddr, usize>>,
}

/// Why a connection was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Its address holds `--max-connections-per-ip` already.
    Address,
    /// The server holds `--max-connections` already.
    Total,
}

/// One connection's place in the counts, given back when dropped. A robot's WebSocket keeps
/// the place of the HTTP connection it was upgraded from.
pub(crate) struct Slot {
    owner: Arc<Connections>,
    ip: IpAddr,
}

impl Connections {
    pub(crate) fn new(max_total: usize, per_ip: usize) -> Connections {
        Connections {
            max_total,
            per_ip,
            total: AtomicUsize::new(0),
            counts: Mutex::new(HashMap::new()),
        }
    }

    pub(crate) fn max_total(&self) -> usize {
        self.max_total
    }

    pub(crate) fn per_ip(&self) -> usize {
        self.per_ip
    }

    pub(crate) fn take(self: &Arc<Self>, ip: IpAddr) -> Result<Slot, Refusal> {
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        if self.total.load(Ordering::Relaxed) >= self.max_total {
            return Err(Refusal::Total);
        }
        let count = counts.entry(ip).or_insert(0);
        if self.per_ip > 0 && *count >= self.per_ip {
            return Err(Refusal::Address);
        }
        *count += 1;
        self.total.fetch_add(1, Ordering::Relaxed);
        Ok(Slot {
            owner: Arc::clone(self),
            ip,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut counts = self
            .owner
            .counts
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        self.owner.total.fetch_sub(1, Ordering::Relaxed);
        if let Some(count) = counts.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.ip);
            }
        }
    }
}

/// The bytes of request bodies held across all connections.
pub(crate) struct BodyBudget {
    max: usize,
    held: AtomicUsize,
}

impl BodyBudget {
    pub(crate) fn new(max: usize) -> BodyBudget {
        BodyBudget {
            max,
            held: AtomicUsize::new(0),
        }
    }

    /// Takes `bytes` from the budget, or nothing when they do not fit.
    fn charge(&self, bytes: usize) -> bool {
        self.held
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
                held.checked_add(bytes).filter(|total| *total <= self.max)
            })
            .is_ok()
    }

    fn release(&self, bytes: usize) {
        self.held.fetch_sub(bytes, Ordering::AcqRel);
    }
}

/// What became of a request's body, read by the listener once the handler answered.
#[derive(Debug, Default)]
pub(crate) struct BodyVerdict {
    timed_out: AtomicBool,
    over_budget: AtomicBool,
}

impl BodyVerdict {
    pub(crate) fn timed_out(&self) -> bool {
        self.timed_out.load(Ordering::Acquire)
    }

    pub(crate) fn over_budget(&self) -> bool {
        self.over_budget.load(Ordering::Acquire)
    }
}

/// Why a body stopped being read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BodyError {
    #[error("the request body did not arrive within --body-timeout")]
    TimedOut,
    #[error("the server holds as many request bodies as --max-inflight-body allows")]
    OverBudget,
    #[error(transparent)]
    Read(#[from] hyper::Error),
}

/// A request body that must arrive before a deadline and is paid for from the [`BodyBudget`]:
/// at its declared length when the head arrives (by [`LimitedBody::charge_declared`]), or
/// frame by frame when no length was declared (chunked). The bytes go back to the budget when
/// the body is dropped, that is once the request was handled.
pub(crate) struct LimitedBody {
    inner: Incoming,
    budget: Arc<BodyBudget>,
    charged: usize,
    /// Charged as frames arrive (no `Content-Length`).
    metered: bool,
    /// `None` for a request without a body.
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    verdict: Arc<BodyVerdict>,
}

impl LimitedBody {
    /// Wraps `inner`, whose head declared `declared` bytes (`None`: chunked). Fails, charging
    /// nothing, when the declared bytes (at most `max_body`: more is never read) do not fit in
    /// the budget.
    pub(crate) fn charge_declared(
        inner: Incoming,
        declared: Option<usize>,
        max_body: usize,
        budget: &Arc<BodyBudget>,
        timeout: Duration,
    ) -> Result<(LimitedBody, Arc<BodyVerdict>), Incoming> {
        let empty = inner.is_end_stream();
        let charge = if empty {
            0
        } else {
            declared.map_or(0, |length| length.min(max_body))
        };
        if charge > 0 && !budget.charge(charge) {
            return Err(inner);
        }
        let verdict = Arc::new(BodyVerdict::default());
        let body = LimitedBody {
            inner,
            budget: Arc::clone(budget),
            charged: charge,
            metered: !empty && declared.is_none(),
            deadline: (!empty).then(|| Box::pin(tokio::time::sleep(timeout))),
            verdict: Arc::clone(&verdict),
        };
        Ok((body, verdict))
    }
}

impl Body for LimitedBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if this.metered
                    && let Some(data) = frame.data_ref()
                {
                    if !this.budget.charge(data.len()) {
                        this.verdict.over_budget.store(true, Ordering::Release);
                        return Poll::Ready(Some(Err(BodyError::OverBudget)));
                    }
                    this.charged += data.len();
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(error))) => Poll::Ready(Some(Err(error.into()))),
            Poll::Ready(None) => {
                this.deadline = None;
                Poll::Ready(None)
            }
            Poll::Pending => {
                if let Some(deadline) = this.deadline.as_mut()
                    && deadline.as_mut().poll(cx).is_ready()
                {
                    this.deadline = None;
                    this.verdict.timed_out.store(true, Ordering::Release);
                    return Poll::Ready(Some(Err(BodyError::TimedOut)));
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for LimitedBody {
    fn drop(&mut self) {
        self.budget.release(self.charged);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_refuses_what_does_not_fit_and_takes_back_what_is_released() {
        let budget = BodyBudget::new(100);
        assert!(budget.charge(60));
        assert!(!budget.charge(41));
        assert!(budget.charge(40));
        assert!(!budget.charge(1));
        budget.release(60);
        assert!(budget.charge(60));
        assert!(!budget.charge(usize::MAX));
    }

    #[test]
    fn connections_are_bounded_in_all_and_per_address() {
        let connections = Arc::new(Connections::new(3, 2));
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let first = connections.take(a).unwrap();
        let _second = connections.take(a).unwrap();
        assert_eq!(connections.take(a).err(), Some(Refusal::Address));
        let _third = connections.take(b).unwrap();
        assert_eq!(connections.take(b).err(), Some(Refusal::Total));
        drop(first);
        assert!(connections.take(b).is_ok());
    }
}

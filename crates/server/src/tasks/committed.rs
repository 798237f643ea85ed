//! The highest event id known to be committed, for everything that follows the events (the live
//! stream, the webhook deliveries): it learns of this instance's commits from the store's writer
//! and of other instances' commits from the database listener (PostgreSQL), and wakes whoever
//! waits. Followers still read the events from the database: this only says when to look.

use tokio::sync::watch;

#[derive(Debug, Clone)]
pub(crate) struct Committed {
    sender: watch::Sender<i64>,
}

impl Committed {
    /// Starts at the highest id in the database when the server started.
    pub(crate) fn new(last: i64) -> Committed {
        Committed {
            sender: watch::Sender::new(last),
        }
    }

    /// Events up to `id` are committed. Never goes back: notices may arrive out of order.
    pub(crate) fn advance(&self, id: i64) {
        self.sender.send_if_modified(|last| {
            let newer = id > *last;
            if newer {
                *last = id;
            }
            newer
        });
    }

    pub(crate) fn last(&self) -> i64 {
        *self.sender.borrow()
    }

    /// A receiver that wakes when a newer id is committed.
    pub(crate) fn subscribe(&self) -> watch::Receiver<i64> {
        self.sender.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn only_newer_ids_wake_followers() {
        let committed = Committed::new(5);
        let mut follower = committed.subscribe();
        committed.advance(3);
        assert!(!follower.has_changed().unwrap());
        committed.advance(9);
        follower.changed().await.unwrap();
        assert_eq!(*follower.borrow_and_update(), 9);
        assert_eq!(committed.last(), 9);
    }
}

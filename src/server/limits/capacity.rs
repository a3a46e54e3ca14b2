//! A semaphore whose size a reload can change while its permits are out.

use std::sync::{Arc, Mutex};

use tokio::sync::Semaphore;

/// `size` places, resizable. Growing adds places at once. Shrinking takes
/// back the free places now and the rest as their holders release them
/// (a connection is never cut for a smaller cap: until enough have
/// closed, newcomers simply find no place).
pub struct Capacity {
    semaphore: Arc<Semaphore>,
    size: Mutex<usize>,
}

impl Capacity {
    pub fn new(size: usize) -> Capacity {
        Capacity {
            semaphore: Arc::new(Semaphore::new(size)),
            size: Mutex::new(size),
        }
    }

    pub fn semaphore(&self) -> &Arc<Semaphore> {
        &self.semaphore
    }

    /// The configured size (places in use included).
    pub fn size(&self) -> usize {
        *self
            .size
            .lock()
            .expect("capacity lock: no panics while held")
    }

    /// Changes the size to `new`. Needs a tokio runtime when shrinking below
    /// the places in use: a task waits for the rest and forgets them.
    pub fn resize(&self, new: usize) {
        let mut size = self
            .size
            .lock()
            .expect("capacity lock: no panics while held");
        let old = std::mem::replace(&mut *size, new);
        if new > old {
            self.semaphore.add_permits(new - old);
        } else if new < old {
            let owed = (old - new) - self.semaphore.forget_permits(old - new);
            if owed > 0 {
                // Waiters are served first come, first served, so the debt is
                // paid before any later newcomer gets a released place; a
                // later growth pays it at once.
                let semaphore = self.semaphore.clone();
                let owed =
                    u32::try_from(owed).expect("sizes come from the config: at most 1,000,000");
                tokio::spawn(async move {
                    if let Ok(permits) = semaphore.acquire_many_owned(owed).await {
                        permits.forget();
                    }
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn growing_adds_places_at_once() {
        let c = Capacity::new(2);
        c.resize(5);
        assert_eq!(c.semaphore().available_permits(), 5);
        assert_eq!(c.size(), 5);
    }

    #[test]
    fn shrinking_takes_back_free_places_at_once() {
        let c = Capacity::new(5);
        let held = c.semaphore().clone().try_acquire_many_owned(2).unwrap();
        c.resize(3);
        assert_eq!(c.semaphore().available_permits(), 1);
        drop(held);
        assert_eq!(c.semaphore().available_permits(), 3);
    }

    #[tokio::test]
    async fn shrinking_below_the_places_in_use_waits_for_releases() {
        let c = Capacity::new(4);
        let held: Vec<_> = (0..4)
            .map(|_| c.semaphore().clone().try_acquire_owned().unwrap())
            .collect();
        c.resize(1);
        // Let the debt task queue for its 3 places.
        tokio::task::yield_now().await;
        let mut held = held.into_iter();
        for _ in 0..3 {
            drop(held.next());
            tokio::task::yield_now().await;
            assert_eq!(
                c.semaphore().available_permits(),
                0,
                "released places pay the debt first"
            );
        }
        drop(held.next());
        tokio::task::yield_now().await;
        assert_eq!(c.semaphore().available_permits(), 1);
    }

    #[tokio::test]
    async fn growing_again_pays_an_open_debt() {
        let c = Capacity::new(3);
        let _held: Vec<_> = (0..3)
            .map(|_| c.semaphore().clone().try_acquire_owned().unwrap())
            .collect();
        c.resize(1);
        tokio::task::yield_now().await;
        c.resize(4);
        tokio::task::yield_now().await;
        // 4 places, 3 in use.
        assert_eq!(c.semaphore().available_permits(), 1);
    }
}

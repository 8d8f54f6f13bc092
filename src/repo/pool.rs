//! The one worker pool: a fixed number of scoped threads taking the items of a slice in
//! order, each as soon as it is free. Order of taking matters to callers (the restorer
//! hands out its biggest packs first, so the last one left to one worker is small).

use std::ops::ControlFlow;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};

/// Runs `work` on every item on up to `workers` threads, and returns once all are done.
/// Once any call returns `Break`, no worker takes another item (calls under way finish).
pub fn for_each<T: Sync>(items: &[T], workers: usize, work: impl Fn(&T) -> ControlFlow<()> + Sync) {
    run(items.len(), workers, |i| match items.get(i) {
        Some(item) => work(item),
        None => ControlFlow::Break(()),
    })
}

/// Runs `work` on every item on up to `workers` threads; the results are in the items'
/// order.
pub fn map<T: Sync, R: Send>(items: &[T], workers: usize, work: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let slots: Vec<Mutex<Option<R>>> = items.iter().map(|_| Mutex::new(None)).collect();
    run(items.len(), workers, |i| {
        if let (Some(item), Some(slot)) = (items.get(i), slots.get(i)) {
            let result = work(item);
            *slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(result);
        }
        ControlFlow::Continue(())
    });
    slots
        .into_iter()
        .filter_map(|slot| slot.into_inner().unwrap_or_else(|p| p.into_inner()))
        .collect()
}

fn run(count: usize, workers: usize, work: impl Fn(usize) -> ControlFlow<()> + Sync) {
    if count == 0 {
        return;
    }
    let next = AtomicUsize::new(0);
    let stopped = AtomicBool::new(false);
    // A panic in `work` reaches the caller: the scope panics once every thread is joined,
    // so `map` never returns with a slot left empty.
    std::thread::scope(|s| {
        for _ in 0..workers.clamp(1, count) {
            s.spawn(|| {
                while !stopped.load(Relaxed) {
                    let i = next.fetch_add(1, Relaxed);
                    if i >= count {
                        break;
                    }
                    if work(i).is_break() {
                        stopped.store(true, Relaxed);
                    }
                }
            });
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn map_keeps_the_items_order_on_many_workers() {
        let items: Vec<u64> = (0..1000).collect();
        let squares = map(&items, 8, |n| n * n);
        assert_eq!(squares, items.iter().map(|n| n * n).collect::<Vec<_>>());
        assert!(map(&Vec::<u64>::new(), 8, |n| *n).is_empty());
    }

    #[test]
    fn for_each_does_every_item_once() {
        let items: Vec<usize> = (0..500).collect();
        let seen: Vec<AtomicUsize> = items.iter().map(|_| AtomicUsize::new(0)).collect();
        for_each(&items, 4, |&i| {
            seen[i].fetch_add(1, Relaxed);
            ControlFlow::Continue(())
        });
        assert!(seen.iter().all(|n| n.load(Relaxed) == 1));
    }

    #[test]
    fn a_break_stops_the_workers_taking_more() {
        let items: Vec<usize> = (0..10_000).collect();
        let done = AtomicUsize::new(0);
        for_each(&items, 4, |&i| {
            done.fetch_add(1, Relaxed);
            if i == 10 {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        });
        // Each worker may finish the item in hand and have taken one more before it saw
        // the stop.
        assert!(done.load(Relaxed) <= 11 + 2 * 4, "{}", done.load(Relaxed));
    }
}

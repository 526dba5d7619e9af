//! Directory walks split over a few threads: on a cold disk each `getdents`/`stat` waits
//! for a read, and one thread at a time leaves the device's queue nearly empty. The
//! catalog's walk (`walk.rs`) and the collector's enumerations (`enumerate.rs`) share it.

use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// Threads walking at once, at most.
const WALKERS: usize = 8;

/// Runs `visit` on every item, on up to [`WALKERS`] threads taking the next item in turn;
/// what each visit pushes comes back in the items' order. The first error stops the rest.
pub(super) fn for_each<T, R>(
    items: &[T],
    visit: impl Fn(&T, &mut Vec<R>) -> io::Result<()> + Sync,
) -> io::Result<Vec<R>>
where
    T: Sync,
    R: Send,
{
    let next = AtomicUsize::new(0);
    let failed = std::sync::atomic::AtomicBool::new(false);
    let found: Mutex<Vec<(usize, Vec<R>)>> = Mutex::new(Vec::with_capacity(items.len()));
    let walkers = WALKERS.min(items.len()).max(1);
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..walkers)
            .map(|_| {
                scope.spawn(|| -> io::Result<()> {
                    let mut mine = Vec::new();
                    while !failed.load(Ordering::Relaxed) {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(item) = items.get(i) else { break };
                        let mut out = Vec::new();
                        if let Err(e) = visit(item, &mut out) {
                            failed.store(true, Ordering::Relaxed);
                            return Err(e);
                        }
                        mine.push((i, out));
                    }
                    found.lock().unwrap_or_else(|e| e.into_inner()).extend(mine);
                    Ok(())
                })
            })
            .collect();
        workers.into_iter().try_for_each(|w| {
            w.join()
                .unwrap_or_else(|_| Err(io::Error::other("a walker panicked")))
        })
    })?;
    let mut found = found.into_inner().unwrap_or_else(|e| e.into_inner());
    found.sort_unstable_by_key(|(i, _)| *i);
    Ok(found.into_iter().flat_map(|(_, out)| out).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_come_back_in_the_items_order_and_an_error_wins() {
        let items: Vec<u32> = (0..1000).collect();
        let out = for_each(&items, |i, out| {
            out.extend([*i, *i]);
            Ok(())
        })
        .unwrap();
        let expected: Vec<u32> = items.iter().flat_map(|i| [*i, *i]).collect();
        assert_eq!(out, expected);
        let err = for_each(&items, |i, out: &mut Vec<u32>| match i {
            500 => Err(io::Error::other("boom")),
            _ => {
                out.push(*i);
                Ok(())
            }
        });
        assert_eq!(err.unwrap_err().to_string(), "boom");
        assert!(for_each(&[] as &[u32], |_, _: &mut Vec<u32>| Ok(()))
            .unwrap()
            .is_empty());
    }
}

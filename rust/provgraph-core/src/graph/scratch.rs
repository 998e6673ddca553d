//! Thread-local, generation-stamped scratch buffers so queries allocate nothing on the hot path.

use std::cell::RefCell;

/// Per-thread query work space, sized to the largest internal id capacity seen.
///
/// `mark[v] == gen` means "visited / has a score in this query"; `aux[v] == gen` is a second
/// per-query flag; `level` and `score` are only meaningful where `mark[v] == gen`.
#[derive(Default)]
pub(crate) struct Scratch {
    pub mark: Vec<u32>,
    pub aux: Vec<u32>,
    pub level: Vec<u8>,
    pub score: Vec<f64>,
    pub queue: Vec<u32>,
    pub gen: u32,
}

impl Scratch {
    /// Makes every buffer cover `cap` ids and starts a new generation.
    fn prepare(&mut self, cap: usize) {
        if self.mark.len() < cap {
            self.mark.resize(cap, 0);
            self.aux.resize(cap, 0);
            self.level.resize(cap, 0);
            self.score.resize(cap, 0.0);
        }
        self.gen = self.gen.wrapping_add(1);
        if self.gen == 0 {
            self.mark.fill(0);
            self.aux.fill(0);
            self.gen = 1;
        }
        self.queue.clear();
    }
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

/// Runs `f` with this thread's scratch prepared for `cap` internal ids.
pub(crate) fn with_scratch<R>(cap: usize, f: impl FnOnce(&mut Scratch) -> R) -> R {
    SCRATCH.with(|cell| match cell.try_borrow_mut() {
        Ok(mut s) => {
            s.prepare(cap);
            f(&mut s)
        }
        // Re-entrant use (not expected): fall back to a private buffer.
        Err(_) => {
            let mut s = Scratch::default();
            s.prepare(cap);
            f(&mut s)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generation_wraps_cleanly() {
        let mut s = Scratch::default();
        s.prepare(4);
        s.mark[2] = s.gen;
        s.gen = u32::MAX;
        s.mark[1] = u32::MAX;
        s.prepare(4);
        assert_eq!(s.gen, 1);
        assert!(s.mark.iter().all(|&m| m == 0));
    }
}

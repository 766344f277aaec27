//! The speech queue of an activity: one speech plays at a time; the next to play is the highest priority, first
//! in first out within a priority (the intended LiveKit behaviour, behaviour §5.2; LiveKit 1.0's min-heap pops the
//! lowest number first, a quirk we do not reproduce).

use std::collections::BTreeMap;

use agents_core::speech::{SpeechHandle, SpeechPriority};

/// Pending speeches, ordered by (priority descending, insertion order).
#[derive(Debug, Default)]
pub struct SpeechQueue {
    /// Key: (inverted priority, sequence number) so that iteration order is play order.
    pending: BTreeMap<(u8, u64), SpeechHandle>,
    next_seq: u64,
}

impl SpeechQueue {
    /// An empty queue.
    pub fn new() -> Self {
        Self::default()
    }

    /// Queues `speech` behind every speech of the same or a higher priority.
    pub fn push(&mut self, speech: SpeechHandle) {
        let key = (u8::MAX - priority_rank(speech.priority()), self.next_seq);
        self.next_seq = self.next_seq.wrapping_add(1);
        self.pending.insert(key, speech);
    }

    /// Removes and returns the next speech to play, skipping speeches already done (interrupted while queued).
    pub fn pop(&mut self) -> Option<SpeechHandle> {
        while let Some((_, speech)) = self.pending.pop_first() {
            if !speech.done() {
                return Some(speech);
            }
        }
        None
    }

    /// Pending speeches in play order.
    pub fn iter(&self) -> impl Iterator<Item = &SpeechHandle> {
        self.pending.values()
    }

    /// Number of pending speeches.
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    /// Whether nothing is pending.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// Removes every pending speech (returned in play order).
    pub fn drain(&mut self) -> Vec<SpeechHandle> {
        std::mem::take(&mut self.pending).into_values().collect()
    }
}

fn priority_rank(p: SpeechPriority) -> u8 {
    p as u8
}

#[cfg(test)]
mod tests {
    use super::*;
    use agents_core::speech::SpeechOptions;

    fn speech(p: SpeechPriority) -> SpeechHandle {
        SpeechHandle::new(SpeechOptions::default().with_priority(p))
    }

    #[test]
    fn high_priority_plays_first_fifo_within_a_level() {
        let mut q = SpeechQueue::new();
        let n1 = speech(SpeechPriority::Normal);
        let l1 = speech(SpeechPriority::Low);
        let h1 = speech(SpeechPriority::High);
        let n2 = speech(SpeechPriority::Normal);
        let h2 = speech(SpeechPriority::High);
        for s in [&n1, &l1, &h1, &n2, &h2] {
            q.push(s.clone());
        }
        let order: Vec<SpeechHandle> = std::iter::from_fn(|| q.pop()).collect();
        assert_eq!(order, vec![h1, h2, n1, n2, l1]);
    }

    #[test]
    fn done_speeches_are_skipped() {
        let mut q = SpeechQueue::new();
        let a = speech(SpeechPriority::Normal);
        let b = speech(SpeechPriority::Normal);
        q.push(a.clone());
        q.push(b.clone());
        a.mark_done();
        assert_eq!(q.pop(), Some(b));
        assert_eq!(q.pop(), None);
    }
}

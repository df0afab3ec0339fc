//! Turns in order: some members of a batch must act one at a time, in batch order.
//!
//! The consumer delivers the resumed events of a batch this way (a paused event type is
//! released in arrival order). Every message of the batch *leaves* when its handling ends,
//! whatever happened, so a member that was skipped or failed early never blocks the ones after
//! it; a member's turn comes when every member before it has left.

use std::collections::BTreeSet;

#[derive(Debug, Default)]
pub struct Turns {
    /// Batch positions of the members, in order.
    members: Vec<usize>,
    left: BTreeSet<usize>,
    /// Members that have left, counted from the front without a gap.
    done: usize,
}

impl Turns {
    /// Members are the positions where `is_member` is true.
    pub fn new(is_member: impl Iterator<Item = bool>) -> Turns {
        let members = is_member.enumerate().filter(|(_, m)| *m).map(|(i, _)| i).collect();
        Turns { members, ..Turns::default() }
    }

    /// Whether `index` may act now: not a member, or every member before it has left.
    pub fn is_turn(&self, index: usize) -> bool {
        self.members.iter().position(|&m| m == index).is_none_or(|position| self.done >= position)
    }

    /// `index` is done (a no-op for non-members and repeated calls).
    pub fn leave(&mut self, index: usize) {
        if !self.members.contains(&index) {
            return;
        }
        self.left.insert(index);
        while self.members.get(self.done).is_some_and(|next| self.left.contains(next)) {
            self.done += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_go_in_order_and_early_leavers_do_not_block() {
        // Positions 1, 3, 4 and 6 are members.
        let mut t = Turns::new([false, true, false, true, true, false, true].into_iter());
        assert!(t.is_turn(0) && t.is_turn(2), "non-members never wait");
        assert!(t.is_turn(1));
        assert!(!t.is_turn(3) && !t.is_turn(4) && !t.is_turn(6));
        // 4 ends early (held again, say) before its turn: 6 still waits for 1 and 3.
        t.leave(4);
        assert!(!t.is_turn(6));
        t.leave(1);
        assert!(t.is_turn(3) && !t.is_turn(6));
        t.leave(0);
        t.leave(3);
        assert!(t.is_turn(6), "3 and the early 4 have both left");
        t.leave(3);
        t.leave(6);
        assert!(t.is_turn(6));
    }
}

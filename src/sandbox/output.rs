//! Bounded capture of a command's output. A command may print far more than anyone reads
//! (`cat` of a huge file, a runaway loop); only the head and the tail are kept, so the
//! server's memory stays bounded whatever the sandbox prints.

use std::collections::VecDeque;

/// Bytes kept of one output stream: the first half and the last half of this.
pub const MAX_CAPTURED_BYTES: usize = 256 * 1024;

pub struct BoundedOutput {
    head: Vec<u8>,
    tail: VecDeque<u8>,
    /// How many bytes fell between head and tail.
    left_out: u64,
    half: usize,
}

impl Default for BoundedOutput {
    fn default() -> Self {
        Self::with_limit(MAX_CAPTURED_BYTES)
    }
}

impl BoundedOutput {
    pub fn with_limit(limit: usize) -> Self {
        Self {
            head: Vec::new(),
            tail: VecDeque::new(),
            left_out: 0,
            half: (limit / 2).max(1),
        }
    }

    pub fn push(&mut self, mut bytes: &[u8]) {
        if self.head.len() < self.half {
            let take = bytes.len().min(self.half - self.head.len());
            self.head.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
        }
        if bytes.len() >= self.half {
            self.left_out += (self.tail.len() + bytes.len() - self.half) as u64;
            self.tail.clear();
            self.tail.extend(&bytes[bytes.len() - self.half..]);
            return;
        }
        self.tail.extend(bytes);
        let excess = self.tail.len().saturating_sub(self.half);
        if excess > 0 {
            self.tail.drain(..excess);
            self.left_out += excess as u64;
        }
    }

    /// The text, with a marker where output was left out. Decoded once at the end, so
    /// characters split across chunks stay whole.
    pub fn into_text(self) -> String {
        let head = String::from_utf8_lossy(&self.head).into_owned();
        let tail: Vec<u8> = self.tail.into_iter().collect();
        let tail = String::from_utf8_lossy(&tail);
        if self.left_out == 0 {
            return head + &tail;
        }
        format!(
            "{head}\n…[{} bytes of output left out]…\n{tail}",
            self.left_out
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_output_is_kept_whole() {
        let mut output = BoundedOutput::with_limit(100);
        output.push(b"hello ");
        output.push("wörld".as_bytes());
        assert_eq!(output.into_text(), "hello wörld");
    }

    #[test]
    fn long_output_keeps_head_and_tail_in_bounded_memory() {
        let mut output = BoundedOutput::with_limit(20);
        output.push(b"0123456789");
        for _ in 0..10_000 {
            output.push(b"xxxxxxx");
        }
        output.push(b"abcdefghij");
        assert!(output.head.len() + output.tail.len() <= 20);
        assert_eq!(
            output.into_text(),
            "0123456789\n…[70000 bytes of output left out]…\nabcdefghij"
        );
    }

    #[test]
    fn one_huge_chunk_is_cut_too() {
        let mut output = BoundedOutput::with_limit(4);
        output.push(b"ab0123456789yz");
        assert_eq!(
            output.into_text(),
            "ab\n…[10 bytes of output left out]…\nyz"
        );
    }
}

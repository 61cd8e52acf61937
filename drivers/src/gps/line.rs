//! Bounded line assembly for a serial byte stream: splits bytes into NMEA lines starting at
//! `$`, with a fixed-size buffer, so garbage and over-long lines never grow memory.
//!
//! Pure: the reader task pushes whatever bytes it read and gets back complete lines or
//! framing problems. Bytes outside a line (before the first `$`, line noise between
//! sentences) are skipped. A line longer than [`MAX_LINE`] is reported once and the rest of it
//! discarded until the next `$`. A `$` in the middle of a line means the previous line was cut
//! short; it is reported as truncated and a new line starts.

use super::nmea::MAX_LINE;

/// What the assembler found.
#[derive(Debug, PartialEq, Eq)]
pub enum LineEvent<'a> {
    /// A complete line from `$` up to (not including) CR or LF.
    Line(&'a [u8]),
    /// A line exceeded [`MAX_LINE`] bytes; its remainder is skipped.
    TooLong,
    /// A line was interrupted by the next `$` before its terminator.
    Truncated,
}

/// The assembler: a fixed buffer of [`MAX_LINE`] bytes.
#[derive(Debug)]
pub struct LineBuffer {
    buf: [u8; MAX_LINE],
    len: usize,
    in_line: bool,
}

impl Default for LineBuffer {
    fn default() -> Self {
        LineBuffer {
            buf: [0; MAX_LINE],
            len: 0,
            in_line: false,
        }
    }
}

impl LineBuffer {
    /// An empty assembler, waiting for `$`.
    pub fn new() -> Self {
        Self::default()
    }

    /// Forgets any partial line (e.g. after the device was reopened).
    pub fn reset(&mut self) {
        self.len = 0;
        self.in_line = false;
    }

    /// Feeds `bytes`, calling `on_event` for each complete line or framing problem.
    pub fn feed(&mut self, bytes: &[u8], mut on_event: impl FnMut(LineEvent<'_>)) {
        for &b in bytes {
            match b {
                b'$' => {
                    if self.in_line {
                        on_event(LineEvent::Truncated);
                    }
                    self.buf[0] = b'$';
                    self.len = 1;
                    self.in_line = true;
                }
                b'\r' | b'\n' => {
                    if self.in_line {
                        on_event(LineEvent::Line(&self.buf[..self.len]));
                    }
                    self.reset();
                }
                _ if !self.in_line => {}
                _ if self.len == MAX_LINE => {
                    on_event(LineEvent::TooLong);
                    self.reset();
                }
                _ => {
                    self.buf[self.len] = b;
                    self.len += 1;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq)]
    enum Ev {
        Line(Vec<u8>),
        TooLong,
        Truncated,
    }

    fn feed_all(lb: &mut LineBuffer, chunks: &[&[u8]]) -> Vec<Ev> {
        let mut out = Vec::new();
        for chunk in chunks {
            lb.feed(chunk, |e| {
                out.push(match e {
                    LineEvent::Line(l) => Ev::Line(l.to_vec()),
                    LineEvent::TooLong => Ev::TooLong,
                    LineEvent::Truncated => Ev::Truncated,
                })
            });
        }
        out
    }

    #[test]
    fn splits_lines_across_chunks() {
        let mut lb = LineBuffer::new();
        let ev = feed_all(
            &mut lb,
            &[b"$GPA*00\r", b"\n$GP", b"B*01\r\n$GPC", b"*02\n"],
        );
        assert_eq!(
            ev,
            vec![
                Ev::Line(b"$GPA*00".to_vec()),
                Ev::Line(b"$GPB*01".to_vec()),
                Ev::Line(b"$GPC*02".to_vec())
            ]
        );
    }

    #[test]
    fn skips_garbage_between_lines() {
        let mut lb = LineBuffer::new();
        let ev = feed_all(
            &mut lb,
            &[
                b"\x00\xff\xb5\x62junk\r\n$GPA*00\r\n\x01\x02noise",
                b"\n$GPB*01\r\n",
            ],
        );
        assert_eq!(
            ev,
            vec![Ev::Line(b"$GPA*00".to_vec()), Ev::Line(b"$GPB*01".to_vec())]
        );
    }

    #[test]
    fn partial_line_interrupted_by_dollar() {
        let mut lb = LineBuffer::new();
        let ev = feed_all(&mut lb, &[b"$GPGGA,123$GPB*01\r\n"]);
        assert_eq!(ev, vec![Ev::Truncated, Ev::Line(b"$GPB*01".to_vec())]);
    }

    #[test]
    fn over_long_line_rejected_once_then_resync() {
        let mut lb = LineBuffer::new();
        let mut long = vec![b'$'];
        long.extend(std::iter::repeat_n(b'A', 1000));
        long.extend_from_slice(b"\r\n$GPB*01\r\n");
        let ev = feed_all(&mut lb, &[&long]);
        assert_eq!(ev, vec![Ev::TooLong, Ev::Line(b"$GPB*01".to_vec())]);
    }

    #[test]
    fn exactly_max_line_is_accepted() {
        let mut lb = LineBuffer::new();
        let mut line = vec![b'$'];
        line.extend(std::iter::repeat_n(b'A', MAX_LINE - 1));
        let mut input = line.clone();
        input.extend_from_slice(b"\r\n");
        assert_eq!(feed_all(&mut lb, &[&input]), vec![Ev::Line(line)]);
    }

    #[test]
    fn reset_drops_partial_line() {
        let mut lb = LineBuffer::new();
        assert!(feed_all(&mut lb, &[b"$GPGGA,12"]).is_empty());
        lb.reset();
        assert_eq!(
            feed_all(&mut lb, &[b"34\r\n$GPB*01\n"]),
            vec![Ev::Line(b"$GPB*01".to_vec())]
        );
    }
}

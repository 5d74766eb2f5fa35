//! UTF-8 checked as the bytes of a text message arrive, frame by frame and
//! within a frame: a sequence that no later byte can make valid fails at
//! once (RFC 6455 §8.1, "fail fast"), while one cut at a frame's end waits
//! for the next bytes. Keeps at most the 3 bytes of an unfinished character.

#[derive(Debug, Default, Clone, Copy)]
pub struct Utf8Check {
    /// The start of a character whose other bytes have not come yet.
    pending: [u8; 4],
    len: usize,
}

/// The text is not UTF-8, whatever follows.
#[derive(Debug, PartialEq, Eq)]
pub struct Invalid;

impl Utf8Check {
    /// Takes the next bytes of the message.
    pub fn feed(&mut self, mut bytes: &[u8]) -> Result<(), Invalid> {
        // An unfinished character first, a byte at a time (at most 3).
        while self.len > 0 {
            let Some((&byte, rest)) = bytes.split_first() else { return Ok(()) };
            bytes = rest;
            self.pending[self.len] = byte;
            self.len += 1;
            match std::str::from_utf8(&self.pending[..self.len]) {
                Ok(_) => self.len = 0,
                Err(e) if e.error_len().is_some() => return Err(Invalid),
                Err(_) => {}
            }
        }
        match std::str::from_utf8(bytes) {
            Ok(_) => Ok(()),
            Err(e) if e.error_len().is_some() => Err(Invalid),
            Err(e) => {
                let rest = &bytes[e.valid_up_to()..];
                self.pending[..rest.len()].copy_from_slice(rest);
                self.len = rest.len();
                Ok(())
            }
        }
    }

    /// The message ended: no character may be left unfinished.
    pub fn finish(&mut self) -> Result<(), Invalid> {
        let unfinished = self.len > 0;
        *self = Self::default();
        if unfinished { Err(Invalid) } else { Ok(()) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(pieces: &[&[u8]]) -> Result<(), Invalid> {
        let mut check = Utf8Check::default();
        for piece in pieces {
            check.feed(piece)?;
        }
        check.finish()
    }

    #[test]
    fn a_character_may_be_cut_anywhere_but_a_bad_byte_fails_at_once() {
        let text = "κόσμε€𝄞".as_bytes();
        for cut in 0..=text.len() {
            assert_eq!(check(&[&text[..cut], &text[cut..]]), Ok(()), "cut at {cut}");
        }
        let bytes: Vec<&[u8]> = text.chunks(1).collect();
        assert_eq!(check(&bytes), Ok(()));
        let mut early = Utf8Check::default();
        assert_eq!(early.feed(b"ok \xce\xba \xf4\x90"), Err(Invalid), "past U+10FFFF: no later byte helps");
        let mut split = Utf8Check::default();
        assert_eq!(split.feed(b"\xe2\x82"), Ok(()));
        assert_eq!(split.feed(b"x"), Err(Invalid), "the character's third byte is not a continuation");
        assert_eq!(check(&[b"abc\xe2\x82"]), Err(Invalid), "unfinished at the end");
        assert_eq!(check(&[b"\xed\xa0\x80"]), Err(Invalid), "a surrogate");
    }

    #[test]
    fn random_bytes_fail_exactly_when_the_whole_would() {
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut random = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let alphabet = [b'a', 0xc3, 0xa9, 0xe2, 0x82, 0xac, 0xf0, 0x9f, 0x98, 0x80, 0xff];
        for _ in 0..20_000 {
            let len = (random() % 12) as usize;
            let bytes: Vec<u8> = (0..len).map(|_| alphabet[(random() % 11) as usize]).collect();
            let cut = (random() as usize) % (len + 1);
            let whole = std::str::from_utf8(&bytes).is_ok();
            assert_eq!(check(&[&bytes[..cut], &bytes[cut..]]).is_ok(), whole, "{bytes:x?} cut at {cut}");
        }
    }
}

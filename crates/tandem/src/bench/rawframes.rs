//! A minimal reader of server-to-client WebSocket frames for the bench's subscribers.
//!
//! The bench client shares the machine's cores with the server it measures, so every
//! microsecond it spends per delivery is taken from the server. Server frames are
//! never masked, and the subscribers only need each text frame's payload, so this
//! reads straight from the socket into one buffer and splits frames in place: no
//! per-message allocation, no UTF-8 check, no control-frame handling (none is needed
//! during a run). Only used after the WebSocket handshake and the Tandem
//! connect/subscribe exchange, when nothing else is buffered.

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

const TEXT: u8 = 0x1;

pub struct RawFrames {
    socket: TcpStream,
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl RawFrames {
    pub fn new(socket: TcpStream) -> Self {
        RawFrames {
            socket,
            buf: vec![0; 16 * 1024],
            start: 0,
            end: 0,
        }
    }

    /// Calls `on_text` with each text frame's payload as it arrives until it returns
    /// false or the connection ends.
    pub async fn for_each_text(&mut self, mut on_text: impl FnMut(&[u8]) -> bool) {
        loop {
            while let Some((opcode, payload)) = self.next_buffered() {
                if opcode == TEXT && !on_text(&self.buf[payload.0..payload.1]) {
                    return;
                }
            }
            if self.start == self.end {
                (self.start, self.end) = (0, 0);
            } else if self.end == self.buf.len() {
                // Make room: move the partial frame to the front, grow if it is large.
                self.buf.copy_within(self.start..self.end, 0);
                (self.start, self.end) = (0, self.end - self.start);
                if self.end == self.buf.len() {
                    self.buf.resize(self.buf.len() * 2, 0);
                }
            }
            match self.socket.read(&mut self.buf[self.end..]).await {
                Ok(0) | Err(_) => return,
                Ok(n) => self.end += n,
            }
        }
    }

    /// The next complete frame in the buffer: (opcode, payload range).
    fn next_buffered(&mut self) -> Option<(u8, (usize, usize))> {
        let (opcode, header, len) = frame_header(&self.buf[self.start..self.end])?;
        let payload = self.start + header;
        if self.end - payload < len {
            return None;
        }
        self.start = payload + len;
        Some((opcode, (payload, payload + len)))
    }
}

/// Parses an unmasked frame header: (opcode, header length, payload length).
fn frame_header(bytes: &[u8]) -> Option<(u8, usize, usize)> {
    let (&b0, &b1) = (bytes.first()?, bytes.get(1)?);
    let opcode = b0 & 0x0f;
    match b1 & 0x7f {
        126 => {
            let len = u16::from_be_bytes(bytes.get(2..4)?.try_into().ok()?);
            Some((opcode, 4, len as usize))
        }
        127 => {
            let len = u64::from_be_bytes(bytes.get(2..10)?.try_into().ok()?);
            Some((opcode, 10, len as usize))
        }
        len => Some((opcode, 2, len as usize)),
    }
}

#[cfg(test)]
mod tests {
    use super::frame_header;

    #[test]
    fn headers_of_each_length_form() {
        assert_eq!(frame_header(&[0x81, 5]), Some((1, 2, 5)));
        assert_eq!(frame_header(&[0x81, 126, 1, 0]), Some((1, 4, 256)));
        let mut long = vec![0x82, 127];
        long.extend(70_000u64.to_be_bytes());
        assert_eq!(frame_header(&long), Some((2, 10, 70_000)));
        assert_eq!(frame_header(&[0x81]), None);
        assert_eq!(frame_header(&[0x81, 126, 1]), None);
    }
}

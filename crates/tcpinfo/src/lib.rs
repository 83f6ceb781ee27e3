//! How many bytes the peer's TCP has acknowledged on a connection.
//!
//! A `write` to a TCP socket succeeds once the bytes are in the *local* kernel's send
//! buffer: a collector that never reads, or resets the connection a moment later, still
//! lets every write succeed. What the peer's TCP has acknowledged is the most a sender
//! can know without an application-level acknowledgement (RELP has one; plain syslog
//! over TCP or TLS does not). Linux keeps that count per connection,
//! `tcpi_bytes_acked` of `getsockopt(TCP_INFO)` (since 4.1), and it stays readable after
//! the connection is reset, so a sender can tell exactly which of its bytes were taken
//! before the reset and which were lost with it.
//!
//! Why a crate of its own: the standard library and `socket2`/`rustix` do not expose
//! `TCP_INFO`, and reading it takes one `unsafe` call into libc. This crate is the only
//! place in the workspace with `unsafe` code of its own; every other crate forbids it.
//! On other systems [`bytes_acked`] answers [`std::io::ErrorKind::Unsupported`], and
//! callers fall back to counting written bytes (and say so).

use std::io;
use std::os::fd::AsFd;

/// Bytes of this connection acknowledged by the peer's TCP so far, counted by the kernel
/// from the connection's start. The count includes one for the SYN of a connection this
/// side opened (and one for a FIN once acknowledged), so callers read it right after
/// connecting and subtract that baseline. It is still readable after the connection was
/// reset or closed by the peer.
///
/// Errors: the socket is not a TCP socket, or the system cannot tell
/// ([`io::ErrorKind::Unsupported`]: not Linux, or a kernel older than 4.1).
#[cfg(target_os = "linux")]
pub fn bytes_acked(socket: &impl AsFd) -> io::Result<u64> {
    use std::os::fd::AsRawFd;
    // A zeroed, 8-byte aligned buffer larger than any `struct tcp_info`: the kernel
    // writes at most `len` bytes, and the field is read back from it without `unsafe`.
    let mut buf = [0u64; 64];
    let capacity = std::mem::size_of_val(&buf);
    let mut len = libc::socklen_t::try_from(capacity)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "buffer too large"))?;
    let fd = socket.as_fd().as_raw_fd();
    #[allow(unsafe_code)]
    // SAFETY: `buf` is a live, writable buffer of `capacity` bytes for the whole call and
    // `len` tells the kernel that size, so it writes at most that many bytes; `fd` is an
    // open descriptor, borrowed for the call. `getsockopt` keeps no pointer afterwards.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            buf.as_mut_ptr().cast::<libc::c_void>(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    let offset = std::mem::offset_of!(libc::tcp_info, tcpi_bytes_acked);
    let written = usize::try_from(len).unwrap_or(0);
    if written < offset + 8 || offset % 8 != 0 {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "this kernel's TCP_INFO has no tcpi_bytes_acked (Linux 4.1 or later needed)",
        ));
    }
    buf.get(offset / 8)
        .copied()
        .ok_or_else(|| io::Error::new(io::ErrorKind::Unsupported, "TCP_INFO shorter than expected"))
}

/// Not Linux: the system cannot tell ([`io::ErrorKind::Unsupported`]).
#[cfg(not(target_os = "linux"))]
pub fn bytes_acked(_socket: &impl AsFd) -> io::Result<u64> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "acknowledged bytes are only known on Linux",
    ))
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::bytes_acked;
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::time::{Duration, Instant};

    /// Polls until `f` holds, for at most 10 s (bounded; not a timing assertion).
    fn eventually(mut f: impl FnMut() -> bool) -> bool {
        let end = Instant::now() + Duration::from_secs(10);
        while Instant::now() < end {
            if f() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        f()
    }

    #[test]
    fn a_reading_peer_acknowledges_every_byte() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let reader = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut total = 0;
            let mut buf = [0u8; 65536];
            loop {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => return total,
                    Ok(n) => total += n,
                }
            }
        });
        let mut stream = TcpStream::connect(addr).unwrap();
        let baseline = bytes_acked(&stream).unwrap();
        let data = vec![7u8; 300_000];
        stream.write_all(&data).unwrap();
        assert!(eventually(
            || bytes_acked(&stream).unwrap() - baseline == 300_000
        ));
        drop(stream);
        assert_eq!(reader.join().unwrap(), 300_000);
    }

    #[test]
    fn a_peer_that_never_reads_acknowledges_only_what_fits_its_buffer() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let stream = TcpStream::connect(addr).unwrap();
        let (peer, _) = listener.accept().unwrap();
        let baseline = bytes_acked(&stream).unwrap();
        // Write until the local send buffer is full too.
        stream.set_nonblocking(true).unwrap();
        let chunk = vec![1u8; 65536];
        let mut written = 0u64;
        let mut stream_ref = &stream;
        let end = Instant::now() + Duration::from_secs(10);
        while Instant::now() < end {
            match stream_ref.write(&chunk) {
                Ok(n) => written += n as u64,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => panic!("{e}"),
            }
        }
        // Give the last segments time to be acknowledged (or not).
        std::thread::sleep(Duration::from_millis(200));
        let acked = bytes_acked(&stream).unwrap() - baseline;
        assert!(acked > 0, "the peer's receive buffer took something");
        assert!(
            acked < written,
            "{acked} of {written} written bytes acknowledged by a peer that never reads"
        );
        drop(peer);
    }

    #[test]
    fn the_count_survives_a_reset() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let mut stream = TcpStream::connect(addr).unwrap();
        let (mut peer, _) = listener.accept().unwrap();
        let baseline = bytes_acked(&stream).unwrap();
        stream.write_all(b"hello").unwrap();
        let mut buf = [0u8; 5];
        peer.read_exact(&mut buf).unwrap();
        assert!(eventually(|| bytes_acked(&stream).unwrap() - baseline == 5));
        // Unread data at close makes the peer reset the connection.
        stream.write_all(b"unread").unwrap();
        std::thread::sleep(Duration::from_millis(50));
        drop(peer);
        let mut probe = [0u8; 1];
        assert!(eventually(|| matches!(
            (&stream).read(&mut probe),
            Err(_) | Ok(0)
        )));
        let after = bytes_acked(&stream).unwrap() - baseline;
        assert!((5..=11).contains(&after), "{after}");
    }

    #[test]
    fn not_a_tcp_socket_is_an_error() {
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        assert!(bytes_acked(&udp).is_err());
    }
}

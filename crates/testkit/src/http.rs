//! A minimal HTTP/1.1 client over `std::net::TcpStream`, enough to talk to weed's S3
//! endpoint from tests: one request per connection (`Connection: close`), no TLS, no
//! redirects, response bodies framed by `Content-Length`, chunked encoding or EOF.

use crate::Error;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// One HTTP response.
#[derive(Debug, Clone)]
pub(crate) struct Response {
    /// The status code (200, 404, ...).
    pub status: u16,
    /// The body (de-chunked).
    pub body: Vec<u8>,
}

impl Response {
    /// The body as lossy UTF-8 (for error messages and XML).
    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// How a request is named in errors: `PUT http://127.0.0.1:8333/bucket`.
pub(crate) fn describe(addr: SocketAddr, method: &str, target: &str) -> String {
    format!("{method} http://{addr}{target}")
}

/// Sends `method target` with `body` to `addr` and reads the whole response; every read
/// and write is bounded by `timeout`.
pub(crate) fn request(
    addr: SocketAddr,
    method: &str,
    target: &str,
    body: &[u8],
    timeout: Duration,
) -> Result<Response, Error> {
    let fail = |reason: String| Error::Http {
        request: describe(addr, method, target),
        reason,
    };
    let mut stream = TcpStream::connect_timeout(&addr, timeout)
        .map_err(|error| fail(format!("connecting: {error}")))?;
    stream
        .set_read_timeout(Some(timeout))
        .and_then(|()| stream.set_write_timeout(Some(timeout)))
        .map_err(|error| fail(format!("setting socket timeouts: {error}")))?;
    let mut message = format!(
        "{method} {target} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: flotilla-testkit\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    message.extend_from_slice(body);
    stream
        .write_all(&message)
        .and_then(|()| stream.flush())
        .map_err(|error| fail(format!("sending: {error}")))?;
    let mut raw = Vec::new();
    stream
        .read_to_end(&mut raw)
        .map_err(|error| fail(format!("reading the response: {error}")))?;
    parse_response(&raw).map_err(fail)
}

/// Parses a complete HTTP/1.1 response (the connection was closed after it).
fn parse_response(raw: &[u8]) -> Result<Response, String> {
    let head_end = find(raw, b"\r\n\r\n").ok_or_else(|| {
        format!(
            "no end of headers in {} bytes: {:?}",
            raw.len(),
            String::from_utf8_lossy(&raw[..raw.len().min(200)])
        )
    })?;
    let head = std::str::from_utf8(&raw[..head_end])
        .map_err(|_| "response headers are not UTF-8".to_string())?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse::<u16>().ok())
        .filter(|_| status_line.starts_with("HTTP/1."))
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_string()))
        .collect();
    let rest = &raw[head_end + 4..];
    let header = |name: &str| {
        headers
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    };
    let body = if header("transfer-encoding").is_some_and(|value| value.contains("chunked")) {
        dechunk(rest)?
    } else if let Some(length) = header("content-length") {
        let length: usize = length
            .parse()
            .map_err(|_| format!("bad Content-Length {length:?}"))?;
        if rest.len() < length {
            return Err(format!(
                "body cut short: {} of {length} bytes (Content-Length)",
                rest.len()
            ));
        }
        rest[..length].to_vec()
    } else {
        rest.to_vec()
    };
    Ok(Response { status, body })
}

/// Decodes a chunked body (RFC 9112 section 7.1); trailers are ignored.
fn dechunk(mut rest: &[u8]) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    loop {
        let line_end = find(rest, b"\r\n").ok_or("chunk size line without CRLF")?;
        let size_text = std::str::from_utf8(&rest[..line_end])
            .map_err(|_| "chunk size is not UTF-8".to_string())?;
        let size_text = size_text.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| format!("bad chunk size {size_text:?}"))?;
        rest = &rest[line_end + 2..];
        if size == 0 {
            return Ok(body);
        }
        if rest.len() < size + 2 {
            return Err(format!("chunk cut short: {} of {size} bytes", rest.len()));
        }
        body.extend_from_slice(&rest[..size]);
        rest = &rest[size + 2..];
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

/// Percent-encodes `text` for a URL (RFC 3986): unreserved characters stay, and `/`
/// too when `keep_slash` (an object key in a path), everything else becomes `%XX`.
pub(crate) fn percent_encode(text: &str, keep_slash: bool) -> String {
    let mut encoded = String::with_capacity(text.len());
    for byte in text.bytes() {
        let keep = byte.is_ascii_alphanumeric()
            || matches!(byte, b'-' | b'.' | b'_' | b'~')
            || (keep_slash && byte == b'/');
        if keep {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

/// The text of every `<tag>...</tag>` element in `xml`, in order, with the XML entities
/// (`&amp;`, `&lt;`, `&gt;`, `&quot;`, `&apos;`, `&#N;`, `&#xN;`) decoded. Minimal: no
/// CDATA, no attributes on `tag`.
pub(crate) fn xml_elements(xml: &str, tag: &str) -> Vec<String> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let mut found = Vec::new();
    let mut rest = xml;
    while let Some(start) = rest.find(&open) {
        let after = &rest[start + open.len()..];
        let Some(end) = after.find(&close) else {
            break;
        };
        found.push(xml_unescape(&after[..end]));
        rest = &after[end + close.len()..];
    }
    found
}

/// Decodes XML character and entity references; unknown ones are kept as they are.
fn xml_unescape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        let after = &rest[amp..];
        let Some(semi) = after.find(';') else {
            out.push_str(after);
            return out;
        };
        let entity = &after[1..semi];
        let decoded = match entity {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            _ => entity
                .strip_prefix("#x")
                .or_else(|| entity.strip_prefix("#X"))
                .and_then(|hex| u32::from_str_radix(hex, 16).ok())
                .or_else(|| entity.strip_prefix('#').and_then(|dec| dec.parse().ok()))
                .and_then(char::from_u32),
        };
        match decoded {
            Some(c) => {
                out.push(c);
                rest = &after[semi + 1..];
            }
            None => {
                out.push('&');
                rest = &after[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn responses_with_length_chunks_or_eof() {
        let plain =
            parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: b\r\n\r\nhello").unwrap();
        assert_eq!(plain.status, 200);
        assert_eq!(plain.body, b"hello");
        let chunked = parse_response(
            b"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n",
        )
        .unwrap();
        assert_eq!(chunked.status, 404);
        assert_eq!(chunked.body, b"abcde");
        let eof = parse_response(b"HTTP/1.0 204 No Content\r\n\r\nrest").unwrap();
        assert_eq!(eof.body, b"rest");
        assert!(parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nshort").is_err());
        assert!(parse_response(b"garbage").is_err());
    }

    #[test]
    fn keys_are_percent_encoded() {
        assert_eq!(percent_encode("dir/a b+c.log", true), "dir/a%20b%2Bc.log");
        assert_eq!(percent_encode("dir/a", false), "dir%2Fa");
        assert_eq!(percent_encode("é", true), "%C3%A9");
    }

    #[test]
    fn xml_keys_are_found_and_unescaped() {
        let xml = "<ListBucketResult><Contents><Key>a &amp; b</Key><ETag>&#34;x&#34;</ETag></Contents>\
                   <Contents><Key>c&lt;d&#x41;&#66;&bogus;</Key></Contents></ListBucketResult>";
        assert_eq!(xml_elements(xml, "Key"), vec!["a & b", "c<dAB&bogus;"]);
        assert_eq!(xml_elements(xml, "ETag"), vec!["\"x\""]);
        assert!(xml_elements(xml, "Missing").is_empty());
    }
}

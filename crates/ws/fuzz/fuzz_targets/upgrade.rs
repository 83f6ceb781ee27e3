//! Fuzz target `upgrade`: arbitrary bytes as an HTTP request head (server side) and as a
//! response head (client side). Must never panic; a complete head is reported at its first
//! complete prefix, within the size limit, and an accepted upgrade's own `101` response
//! must satisfy the client.
#![no_main]

use flotilla_ws::{MAX_REQUEST_HEAD, client_key, parse_request, parse_response, upgrade_response};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(Some((request, consumed))) = parse_request(data) {
        assert!(consumed <= data.len() && consumed <= MAX_REQUEST_HEAD);
        assert_eq!(parse_request(&data[..consumed - 1]), Ok(None));
        if let Some(key) = &request.websocket_key {
            let response = upgrade_response(key);
            assert_eq!(parse_response(&response, key), Ok(Some(response.len())));
        }
    }
    let key = client_key([0x5a; 16]);
    if let Ok(Some(consumed)) = parse_response(data, &key) {
        assert!(consumed <= data.len() && consumed <= MAX_REQUEST_HEAD);
        assert_eq!(parse_response(&data[..consumed - 1], &key), Ok(None));
    }
});

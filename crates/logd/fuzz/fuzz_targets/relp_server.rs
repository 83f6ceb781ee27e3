//! A RELP client sending arbitrary bytes in arbitrary pieces to logd's server session
//! (acknowledgements given by the shell): never a panic; every `syslog` event is answered.
#![no_main]
use flotilla_relp::{RelpServerConfig, RelpServerEvent, RelpServerSession};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&chunk, data)) = data.split_first() else {
        return;
    };
    let Ok(mut session) = RelpServerSession::new(RelpServerConfig {
        max_data_len: 4096,
        auto_ack: false,
        ..RelpServerConfig::default()
    }) else {
        return;
    };
    let mut out = Vec::new();
    for c in data.chunks(usize::from(chunk) + 1) {
        let failed = session.handle_input(c).is_err();
        while let Some(event) = session.poll_event() {
            if let RelpServerEvent::Syslog { txnr, .. } = event {
                let _ = session.ack(txnr);
            }
        }
        out.clear();
        session.poll_transmit(&mut out);
        if failed || session.is_closed() {
            break;
        }
    }
});

//! What a page posts to the widget host (anything a web page can send over the host's
//! WebSocket): every input is relayed unchanged, answered, or refused with a reason, never a
//! panic; the host's answers are JSON; the driver's messages always reach the page.
#![no_main]

use libfuzzer_sys::fuzz_target;
use matrix_sdk_rtc_widget::relay::{Output, Relay};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let mut relay = Relay::new("element-call", true);
    match relay.page_message(text) {
        Ok(outputs) => {
            for output in outputs {
                match output {
                    Output::ToDriver(forwarded) => assert_eq!(forwarded, text),
                    Output::ToPage(answer) | Output::AskTransports(answer) => {
                        let value: serde_json::Value = serde_json::from_str(&answer).unwrap();
                        assert_eq!(value["widgetId"], "element-call");
                    }
                    _ => {}
                }
            }
        }
        Err(refusal) => {
            let _ = refusal.to_string();
        }
    }
    // The same bytes as the driver's answer: always posted to the page.
    assert!(matches!(relay.driver_message(text.to_owned()), Output::ToPage(_)));
    let _ = relay.scheduled_delayed_events().count();
});

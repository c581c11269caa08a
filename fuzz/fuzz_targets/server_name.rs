//! Matrix server names from OpenID tokens: a name that parses always yields a URL authority that
//! round-trips, and contains nothing but host and port characters.
#![no_main]

use libfuzzer_sys::fuzz_target;
use matrixrtc_auth::server_name::ServerName;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(name) = text.parse::<ServerName>() {
        let printed = name.to_string();
        assert!(printed.bytes().all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b)), "{printed}");
        assert_eq!(printed.parse::<ServerName>().as_ref(), Ok(&name));
    }
});

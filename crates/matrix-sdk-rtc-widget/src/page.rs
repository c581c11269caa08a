//! The host page: Element Call in an iframe, and a script that relays its widget API messages to
//! and from the host over a WebSocket.
//!
//! The page's contract (tests and kiosks read it):
//! - the iframe is `#ec` (name `ec`); it gets its `src` once the WebSocket is open;
//! - `body[data-state]`: `connecting`, `in-call` (Element Call loaded), `ended` (the host closed
//!   the session: the iframe is removed, `#status` says why, a button loads the page again);
//! - `body[data-widget-id]`: the widget's id;
//! - `body[data-rejected]`: how many posted messages were refused (not from the iframe's window,
//!   or not from Element Call's origin).

use serde_json::json;

/// What the page needs to know.
#[derive(Debug)]
pub(crate) struct PageConfig<'a> {
    pub(crate) element_call_url: &'a str,
    pub(crate) element_call_origin: &'a str,
    /// The WebSocket's path and query, secret included.
    pub(crate) socket_path: &'a str,
    pub(crate) widget_id: &'a str,
}

/// The page, its script allowed by `nonce`.
pub(crate) fn render(config: &PageConfig<'_>, nonce: &str) -> String {
    let data = json!({
        "elementCallUrl": config.element_call_url,
        "elementCallOrigin": config.element_call_origin,
        "socketPath": config.socket_path,
        "widgetId": config.widget_id,
    });
    // Inside <script>: no `<` at all, so no `</script>` or `<!--` can end it early.
    let data = data.to_string().replace('<', "\\u003c");
    PAGE.replace("{NONCE}", nonce).replace("{CONFIG}", &data)
}

/// The Content-Security-Policy of the page: its own script, Element Call in the frame, the
/// host's WebSocket; nothing else, and no one may frame it.
pub(crate) fn content_security_policy(
    nonce: &str,
    element_call_origin: &str,
    socket_origin: &str,
) -> String {
    format!(
        "default-src 'none'; script-src 'nonce-{nonce}'; style-src 'unsafe-inline'; \
         frame-src {element_call_origin}; connect-src {socket_origin}; frame-ancestors 'none'; \
         base-uri 'none'; form-action 'none'"
    )
}

const PAGE: &str = r#"<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>Element Call</title>
<style>
  html, body { margin: 0; height: 100%; background: #101317; color: #e6e6e6; font: 15px system-ui, sans-serif; }
  #ec { position: fixed; inset: 0; width: 100%; height: 100%; border: 0; }
  #status { position: fixed; top: 40%; width: 100%; text-align: center; }
  #again { display: none; margin: 1em auto; padding: .5em 1.2em; font: inherit; }
  body[data-state="ended"] #again { display: block; }
  body[data-state="in-call"] #status { display: none; }
</style>
</head>
<body data-state="connecting" data-rejected="0">
<div id="status">Connecting to the host…</div>
<button id="again" type="button">Join again</button>
<iframe id="ec" name="ec" title="Element Call" referrerpolicy="no-referrer"
  allow="camera; microphone; autoplay; display-capture; clipboard-write; encrypted-media"></iframe>
<script type="application/json" id="config">{CONFIG}</script>
<script nonce="{NONCE}">
"use strict";
(() => {
  const config = JSON.parse(document.getElementById("config").textContent);
  const body = document.body;
  const frame = document.getElementById("ec");
  const status = document.getElementById("status");
  body.dataset.widgetId = config.widgetId;
  document.getElementById("again").addEventListener("click", () => location.reload());
  const say = (text) => { status.textContent = text; };
  let socket = null;
  let busyRetries = 0;

  const end = (reason) => {
    if (body.dataset.state === "ended") return;
    frame.remove();
    body.dataset.state = "ended";
    say(reason);
  };

  // Element Call's messages: only from the iframe's window, only from Element Call's origin.
  window.addEventListener("message", (event) => {
    if (event.source !== frame.contentWindow || event.origin !== config.elementCallOrigin) {
      body.dataset.rejected = String(Number(body.dataset.rejected) + 1);
      return;
    }
    const data = event.data;
    if (data === null || typeof data !== "object" || typeof data.api !== "string") return;
    if (socket && socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify(data));
  });

  frame.addEventListener("load", () => {
    if (frame.getAttribute("src") && body.dataset.state === "connecting") body.dataset.state = "in-call";
  });

  const connect = () => {
    const url = new URL(config.socketPath, location.href);
    url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
    socket = new WebSocket(url);
    socket.addEventListener("open", () => {
      busyRetries = 0;
      say("Loading Element Call…");
      frame.src = config.elementCallUrl;
    });
    socket.addEventListener("message", (event) => {
      let message;
      try { message = JSON.parse(event.data); } catch { return; }
      if (frame.contentWindow) frame.contentWindow.postMessage(message, config.elementCallOrigin);
    });
    socket.addEventListener("close", (event) => {
      // 4409: the host is still ending the previous page's session (a reload): try again.
      if (event.code === 4409 && !frame.getAttribute("src") && busyRetries++ < 10) {
        say("Another page is in the call; waiting…");
        setTimeout(connect, 1000);
        return;
      }
      end(event.reason || "The connection to the host was lost.");
    });
  };
  connect();
})();
</script>
</body>
</html>
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_cannot_close_its_script() {
        let config = PageConfig {
            element_call_url: "https://ec.example/index.html#?a=</script><script>alert(1)</script>",
            element_call_origin: "https://ec.example",
            socket_path: "/ws?secret=abc",
            widget_id: "<!--",
        };
        let page = render(&config, "n0nce");
        let start = page.find(r#"id="config">"#).unwrap();
        let end = start + page[start..].find("</script>").unwrap();
        let data = &page[start + r#"id="config">"#.len()..end];
        assert!(!data.contains('<'));
        let parsed: serde_json::Value = serde_json::from_str(data).unwrap();
        assert_eq!(parsed["widgetId"], "<!--");
        assert!(page.contains(r#"<script nonce="n0nce">"#));
    }

    #[test]
    fn the_policy_allows_element_call_and_the_socket_only() {
        let csp = content_security_policy("n", "http://127.0.0.1:8080", "ws://127.0.0.1:9000");
        assert!(csp.contains("frame-src http://127.0.0.1:8080;"));
        assert!(csp.contains("connect-src ws://127.0.0.1:9000;"));
        assert!(csp.contains("frame-ancestors 'none'"));
        assert!(csp.starts_with("default-src 'none'; script-src 'nonce-n';"));
    }
}

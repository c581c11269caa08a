#![recursion_limit = "256"]
//! The host against the local stack's homeserver, with this test as the page: it opens the
//! host's WebSocket and speaks the widget API as Element Call does, to matrix-sdk's real widget
//! driver. Shows the refusals (a WebSocket without the secret or from another origin, a second
//! page, a message for another widget, a capability the policy does not grant and the request
//! that needed it), the capability negotiation, the host's own answers (RTC transports), and
//! that a page gone without leaving has its delayed leave sent by the host.
//!
//! Needs `cargo xtask devstack up` (or `cargo xtask test`).

use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use matrix_sdk::Client;
use matrix_sdk_rtc_widget::{ElementCallHost, HostEvent, HostOptions, SessionEnd};
use rtc_test_support::{Homeserver, StackInfo, encode_path_segment};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

const DEVICE: &str = "WIDGETHOST";
const WIDGET: &str = "element-call";
const CALL_MEMBER: &str = "org.matrix.msc3401.call.member";

/// A client of a new user in a new room of its own, syncing.
async fn client_in_a_room(stack: &StackInfo, hs: &Homeserver) -> (Client, matrix_sdk::Room) {
    let user = hs.register_unique("widgethost").await.unwrap();
    let room_id = hs.create_call_room(&user, &[]).await.unwrap();
    let localpart = user.user_id.trim_start_matches('@').split(':').next().unwrap().to_owned();
    let client = Client::builder().homeserver_url(&stack.homeserver_url).build().await.unwrap();
    client
        .matrix_auth()
        .login_username(&localpart, &localpart)
        .device_id(DEVICE)
        .send()
        .await
        .unwrap();
    client.sync_once(Default::default()).await.unwrap();
    let room = client.get_room(&room_id.parse::<matrix_sdk::ruma::OwnedRoomId>().unwrap()).unwrap();
    let syncing = client.clone();
    tokio::spawn(async move {
        let _ = syncing.sync(Default::default()).await;
    });
    (client, room)
}

/// Opens the host's WebSocket with `query` and `origin`.
async fn open(
    host: &ElementCallHost,
    query: &str,
    origin: &str,
) -> Result<Socket, tungstenite::Error> {
    let url = format!("{}/ws{query}", host.page_origin()).replacen("http", "ws", 1);
    let mut request = url.into_client_request().unwrap();
    request.headers_mut().insert("origin", origin.parse().unwrap());
    tokio_tungstenite::connect_async(request).await.map(|(socket, _)| socket)
}

fn status_of(error: tungstenite::Error) -> u16 {
    match error {
        tungstenite::Error::Http(response) => response.status().as_u16(),
        other => panic!("not refused with an HTTP status: {other}"),
    }
}

async fn send(socket: &mut Socket, message: Value) {
    socket.send(Message::text(message.to_string())).await.unwrap();
}

/// The next message from the host, as JSON.
async fn next(socket: &mut Socket) -> Value {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(15), socket.next())
            .await
            .expect("a message from the host within 15 s")
            .expect("the socket is open")
            .unwrap();
        if let Message::Text(text) = message {
            return serde_json::from_str(&text).unwrap();
        }
    }
}

/// The host's answer to our request `id` (driver requests in between are answered `{}`).
async fn answer_to(socket: &mut Socket, id: &str) -> Value {
    loop {
        let mut message = next(socket).await;
        if message["api"] == "fromWidget" && message["requestId"] == id {
            return message["response"].take();
        }
        if message["api"] == "toWidget" && message.get("response").is_none() {
            message["response"] = json!({});
            send(socket, message).await;
        }
    }
}

/// The driver's next request of `action`, answered with `response`; its data.
async fn request_of(socket: &mut Socket, action: &str, response: Value) -> Value {
    loop {
        let mut message = next(socket).await;
        if message["api"] == "toWidget" && message.get("response").is_none() {
            let data = message["data"].take();
            let matches = message["action"] == action;
            message["response"] = if matches { response.clone() } else { json!({}) };
            send(socket, message).await;
            if matches {
                return data;
            }
        }
    }
}

fn request(id: &str, action: &str, data: Value) -> Value {
    json!({"api": "fromWidget", "widgetId": WIDGET, "requestId": id, "action": action, "data": data})
}

async fn event(
    events: &mut tokio::sync::mpsc::Receiver<HostEvent>,
    check: impl Fn(&HostEvent) -> bool,
) -> HostEvent {
    loop {
        let event = tokio::time::timeout(Duration::from_secs(15), events.recv())
            .await
            .expect("a host event within 15 s")
            .expect("the host is running");
        if check(&event) {
            return event;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_host_relays_a_widget_within_its_policy_and_refuses_the_rest() {
    let stack = StackInfo::require();
    let hs = Homeserver::new(&stack);
    let (client, room) = client_in_a_room(&stack, &hs).await;
    let user_id = client.user_id().unwrap().to_string();
    let room_id = room.room_id().to_string();

    // Element Call's address is never loaded: this test is the page.
    let mut host =
        ElementCallHost::start(room, HostOptions::new("http://127.0.0.1:9/".parse().unwrap()))
            .await
            .unwrap();
    let mut events = host.events().unwrap();
    let secret = host.page_url().query_pairs().find(|(k, _)| k == "secret").unwrap().1.into_owned();
    let origin = host.page_origin().to_owned();

    // Refused at the door.
    let refused = |r: Result<Socket, _>| status_of(r.expect_err("refused"));
    assert_eq!(refused(open(&host, "", &origin).await), 403, "no secret");
    assert_eq!(refused(open(&host, "?secret=00", &origin).await), 403, "a wrong secret");
    let with_secret = format!("?secret={secret}");
    assert_eq!(
        refused(open(&host, &with_secret, "http://127.0.0.1:1").await),
        403,
        "another origin"
    );

    let mut page = open(&host, &with_secret, &origin).await.unwrap();
    assert!(matches!(event(&mut events, |_| true).await, HostEvent::PageConnected));
    // One page at a time.
    let mut second = open(&host, &with_secret, &origin).await.unwrap();
    match second.next().await {
        Some(Ok(Message::Close(Some(frame)))) => assert_eq!(u16::from(frame.code), 4409),
        other => panic!("the second page was not turned away: {other:?}"),
    }

    // The versions say the host serves RTC transports itself.
    send(&mut page, request("v1", "supported_api_versions", json!({}))).await;
    let versions = answer_to(&mut page, "v1").await;
    let versions = versions["supported_versions"].as_array().unwrap();
    assert!(versions.contains(&json!("org.matrix.msc4515")), "{versions:?}");
    assert!(versions.contains(&json!("org.matrix.msc2762_update_state")), "{versions:?}");

    // Capabilities: what the policy grants and nothing else.
    send(&mut page, request("c1", "content_loaded", json!({}))).await;
    let own_key = format!("_{user_id}_{DEVICE}_m.call");
    let asked = json!([
        format!("org.matrix.msc2762.send.state_event:{CALL_MEMBER}#{own_key}"),
        format!("org.matrix.msc2762.send.state_event:{CALL_MEMBER}#_@eve:localhost_EVE_m.call"),
        format!("org.matrix.msc2762.receive.state_event:{CALL_MEMBER}"),
        "org.matrix.msc2762.send.event:m.room.message",
        "org.matrix.msc4157.send.delayed_event",
        "org.matrix.msc4157.update_delayed_event",
    ]);
    request_of(&mut page, "capabilities", json!({ "capabilities": asked })).await;
    let notified = request_of(&mut page, "notify_capabilities", json!({})).await;
    let approved: Vec<&str> =
        notified["approved"].as_array().unwrap().iter().map(|c| c.as_str().unwrap()).collect();
    assert!(approved.contains(
        &format!("org.matrix.msc2762.send.state_event:{CALL_MEMBER}#{own_key}").as_str()
    ));
    assert!(
        !approved.iter().any(|c| c.contains("m.room.message") || c.contains("@eve")),
        "{approved:?}"
    );
    let HostEvent::Capabilities(grant) =
        event(&mut events, |e| matches!(e, HostEvent::Capabilities(_))).await
    else {
        unreachable!()
    };
    assert_eq!(grant.refused.len(), 2, "{grant:?}");

    // The refused capability's request is refused by the driver, and nothing reaches the room.
    let body = format!("not allowed {}", std::process::id());
    let message = json!({"type": "m.room.message", "content": {"msgtype": "m.text", "body": body}});
    send(&mut page, request("m1", "send_event", message)).await;
    let refused = answer_to(&mut page, "m1").await;
    assert!(refused.get("error").is_some(), "{refused}");
    // So is another user's membership.
    let eve =
        json!({"type": CALL_MEMBER, "state_key": "_@eve:localhost_EVE_m.call", "content": {}});
    send(&mut page, request("m2", "send_event", eve)).await;
    assert!(answer_to(&mut page, "m2").await.get("error").is_some());
    // A message for another widget goes nowhere, and is said.
    let mut other = request("x1", "send_event", json!({}));
    other["widgetId"] = "another".into();
    send(&mut page, other).await;
    let HostEvent::MessageRefused(why) =
        event(&mut events, |e| matches!(e, HostEvent::MessageRefused(_))).await
    else {
        unreachable!()
    };
    assert!(why.contains("another widget"), "{why}");

    // RTC transports come from the host: the homeserver's authorization service.
    send(&mut page, request("t1", "org.matrix.msc4515.get_rtc_transports", json!({}))).await;
    let transports = answer_to(&mut page, "t1").await;
    assert_eq!(transports["rtc_transports"][0]["type"], "livekit", "{transports}");
    assert_eq!(
        transports["rtc_transports"][0]["livekit_service_url"]
            .as_str()
            .map(|u| u.trim_end_matches('/')),
        Some(stack.auth_service_url.trim_end_matches('/'))
    );

    // Our membership, and its delayed leave.
    let membership = json!({"type": CALL_MEMBER, "state_key": own_key, "content": {"application": "m.call", "device_id": DEVICE}});
    send(&mut page, request("j1", "send_event", membership)).await;
    assert!(answer_to(&mut page, "j1").await.get("event_id").is_some());
    let leave = json!({"type": CALL_MEMBER, "state_key": own_key, "content": {}, "delay": 600_000});
    send(&mut page, request("j2", "send_event", leave)).await;
    let scheduled = answer_to(&mut page, "j2").await;
    assert!(scheduled["delay_id"].is_string(), "{scheduled}");

    // The page goes away without leaving: the host sends the delayed leave at once.
    drop(page);
    let ended = event(&mut events, |e| matches!(e, HostEvent::PageDisconnected { .. })).await;
    assert_eq!(
        ended,
        HostEvent::PageDisconnected { end: SessionEnd::PageGone, delayed_events_sent: 1 }
    );
    let path = format!(
        "/_matrix/client/v3/rooms/{}/state/{CALL_MEMBER}/{}",
        encode_path_segment(&room_id),
        encode_path_segment(&own_key)
    );
    let owner = rtc_test_support::User {
        user_id: user_id.clone(),
        device_id: DEVICE.into(),
        access_token: client.access_token().unwrap(),
    };
    assert_eq!(hs.get(&owner, &path).await.unwrap(), json!({}), "the membership is left");
    let messages = hs
        .get(
            &owner,
            &format!(
                "/_matrix/client/v3/rooms/{}/messages?dir=b&limit=50",
                encode_path_segment(&room_id)
            ),
        )
        .await
        .unwrap();
    assert!(!messages.to_string().contains(&body), "the refused message reached the room");

    // A new page gets a new driver. Element Call's own hang-up and close end its session, and
    // the page is told.
    let mut again = open(&host, &with_secret, &origin).await.unwrap();
    send(&mut again, request("v2", "supported_api_versions", json!({}))).await;
    assert!(answer_to(&mut again, "v2").await["supported_versions"].is_array());
    send(&mut again, request("h1", "im.vector.hangup", json!({}))).await;
    assert_eq!(answer_to(&mut again, "h1").await, json!({}));
    send(&mut again, request("h2", "io.element.close", json!({}))).await;
    assert_eq!(answer_to(&mut again, "h2").await, json!({}));
    match again.next().await {
        Some(Ok(Message::Close(Some(frame)))) => {
            assert_eq!(u16::from(frame.code), 1000, "{frame:?}")
        }
        other => panic!("the page was not told the call ended: {other:?}"),
    }
    event(&mut events, |e| *e == HostEvent::HungUp).await;
    let ended = event(&mut events, |e| matches!(e, HostEvent::PageDisconnected { .. })).await;
    assert_eq!(
        ended,
        HostEvent::PageDisconnected { end: SessionEnd::Closed, delayed_events_sent: 0 }
    );

    let mut again = open(&host, &with_secret, &origin).await.unwrap();
    send(&mut again, request("v3", "supported_api_versions", json!({}))).await;
    assert!(answer_to(&mut again, "v3").await["supported_versions"].is_array());
    host.shutdown(Duration::from_secs(1)).await;
    // The host asked Element Call to hang up; this page did not, so it is told the host stopped.
    let mut asked_to_hang_up = false;
    loop {
        match again.next().await {
            Some(Ok(Message::Text(text))) => asked_to_hang_up |= text.contains("im.vector.hangup"),
            Some(Ok(Message::Close(Some(frame)))) => {
                assert_eq!(u16::from(frame.code), 1001, "{frame:?}");
                break;
            }
            other => panic!("the page was not told the host stopped: {other:?}"),
        }
    }
    assert!(asked_to_hang_up);
}

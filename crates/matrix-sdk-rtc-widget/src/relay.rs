//! The relay between the host page and matrix-sdk's widget driver, sans-IO: text in, text and
//! events out. [`ElementCallHost`](crate::ElementCallHost) runs one per page load; it is public
//! for hosts with another transport to the widget (a webview's message channel, say).
//!
//! The page forwards what Element Call posts; the relay checks every message (JSON object, this
//! widget's id, a request id, the direction the widget may use), answers the actions that are the
//! host's business (Element Call joined, hung up, closed, muted; always-on-screen), keeps the
//! answers to the host's own requests for itself, and hands the rest to the driver. It also
//! follows Element Call's delayed events (its scheduled leave) through the driver's answers, so
//! that the host can send them when Element Call is gone without leaving.

use std::collections::{BTreeSet, HashMap, HashSet};

use serde_json::{Map, Value, json};

/// Request ids of requests the host sends to the widget start with this.
const HOST_REQUEST_PREFIX: &str = "host-";
/// The longest request id or action accepted.
const MAX_NAME_LEN: usize = 256;
/// Requests of the widget followed at once (answers pending); beyond this they are forwarded
/// unfollowed. The driver itself answers at most 15 at a time.
const MAX_FOLLOWED: usize = 256;

/// What the relay says to do.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Output {
    /// Post this to the widget (through the page).
    ToPage(String),
    /// Hand this to the driver.
    ToDriver(String),
    /// Something the host should know.
    Event(WidgetAction),
    /// The widget asks for the homeserver's RTC transports (MSC4515): answer this request with
    /// [`Relay::answer`].
    AskTransports(String),
}

/// An action of Element Call that is the host's business.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum WidgetAction {
    /// It joined the call (`io.element.join`).
    Joined,
    /// It left the call (`im.vector.hangup`).
    HungUp,
    /// It is done and may be removed (`io.element.close`).
    Closed,
    /// Its microphone or camera was switched (`io.element.device_mute`).
    DeviceMute {
        /// The microphone is on.
        audio: Option<bool>,
        /// The camera is on.
        video: Option<bool>,
    },
}

/// Why a message from the page was not relayed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// Not a JSON object.
    #[error("not a JSON object")]
    NotAnObject,
    /// A field is missing, not a string, empty or too long.
    #[error("no valid `{0}`")]
    Field(&'static str),
    /// For another widget.
    #[error("for another widget")]
    OtherWidget,
    /// A request to the widget or an answer from the driver: the widget cannot speak for the
    /// driver.
    #[error("a {0} the widget may not send")]
    Direction(&'static str),
}

/// The widget API version of `get_rtc_transports` (MSC4515), which the host answers itself.
const RTC_TRANSPORTS_VERSION: &str = "org.matrix.msc4515";

/// A request of the widget whose answer the relay reads.
#[derive(Debug, Clone)]
enum Followed {
    /// Any request: counted until answered, so that the host knows when the driver is done.
    Plain,
    /// `supported_api_versions`: the host adds the versions it serves itself.
    Versions,
    /// `send_event` with a delay: the answer carries the delay id.
    DelayedSend,
    /// `update_delayed_event` sending or cancelling `delay_id`.
    DelayedEnd { delay_id: String },
}

/// The relay's state for one page load.
///
/// ```
/// use matrix_sdk_rtc_widget::relay::{Output, Relay, WidgetAction};
///
/// let mut relay = Relay::new("element-call", false);
/// let close = r#"{"api":"fromWidget","widgetId":"element-call","requestId":"r1","action":"io.element.close","data":{}}"#;
/// let outputs = relay.page_message(close).unwrap();
/// assert_eq!(outputs[1], Output::Event(WidgetAction::Closed));
/// ```
#[derive(Debug)]
pub struct Relay {
    widget_id: String,
    /// Whether the host answers `get_rtc_transports` (and says so in the versions).
    serves_transports: bool,
    next_host_request: u64,
    /// The host's requests the widget has not answered yet.
    host_requests: HashSet<String>,
    /// The widget's requests the driver has not answered yet.
    followed: HashMap<String, Followed>,
    /// Delay ids of the widget's delayed events neither sent nor cancelled.
    scheduled: BTreeSet<String>,
}

impl Relay {
    /// A relay for `widget_id`; `serves_transports`: the host answers MSC4515's
    /// `get_rtc_transports` (matrix-sdk 0.18's driver does not know it).
    pub fn new(widget_id: impl Into<String>, serves_transports: bool) -> Self {
        Self {
            widget_id: widget_id.into(),
            serves_transports,
            next_host_request: 1,
            host_requests: HashSet::new(),
            followed: HashMap::new(),
            scheduled: BTreeSet::new(),
        }
    }

    /// A message from the page (what the widget posted): what to do with it, or why it is
    /// refused.
    pub fn page_message(&mut self, text: &str) -> Result<Vec<Output>, Refusal> {
        let Ok(Value::Object(message)) = serde_json::from_str::<Value>(text) else {
            return Err(Refusal::NotAnObject);
        };
        let api = name_field(&message, "api")?;
        if name_field(&message, "widgetId")? != self.widget_id {
            return Err(Refusal::OtherWidget);
        }
        let request_id = name_field(&message, "requestId")?.to_owned();
        let action = name_field(&message, "action")?.to_owned();
        let answer = message.contains_key("response");
        match (api, answer) {
            ("fromWidget", false) => Ok(self.widget_request(message, text, &request_id, &action)),
            ("toWidget", true) => {
                if self.host_requests.remove(&request_id) {
                    Ok(Vec::new())
                } else {
                    Ok(vec![Output::ToDriver(text.to_owned())])
                }
            }
            ("fromWidget", true) => Err(Refusal::Direction("fromWidget answer")),
            ("toWidget", false) => Err(Refusal::Direction("toWidget request")),
            _ => Err(Refusal::Field("api")),
        }
    }

    fn widget_request(
        &mut self,
        mut message: Map<String, Value>,
        text: &str,
        request_id: &str,
        action: &str,
    ) -> Vec<Output> {
        let data = message.get("data").and_then(Value::as_object);
        let (reply, action) = match action {
            "io.element.join" => (json!({}), WidgetAction::Joined),
            "im.vector.hangup" => (json!({}), WidgetAction::HungUp),
            "io.element.close" => (json!({}), WidgetAction::Closed),
            "io.element.device_mute" => {
                let flag = |name| data.and_then(|d| d.get(name)).and_then(Value::as_bool);
                let mute = WidgetAction::DeviceMute {
                    audio: flag("audio_enabled"),
                    video: flag("video_enabled"),
                };
                (json!({}), mute)
            }
            "set_always_on_screen" => {
                // Nothing to do: the host page always shows the widget.
                message.insert("response".into(), json!({ "success": true }));
                return vec![Output::ToPage(Value::Object(message).to_string())];
            }
            "org.matrix.msc4515.get_rtc_transports" if self.serves_transports => {
                return vec![Output::AskTransports(Value::Object(message).to_string())];
            }
            _ => {
                let followed = match action {
                    "supported_api_versions" if self.serves_transports => Followed::Versions,
                    "send_event" if data.is_some_and(|d| d.get("delay").is_some()) => {
                        Followed::DelayedSend
                    }
                    "org.matrix.msc4157.update_delayed_event" => {
                        let field = |name| data.and_then(|d| d.get(name)).and_then(Value::as_str);
                        match (field("delay_id"), field("action")) {
                            (Some(id), Some("send" | "cancel")) => {
                                Followed::DelayedEnd { delay_id: id.to_owned() }
                            }
                            _ => Followed::Plain,
                        }
                    }
                    _ => Followed::Plain,
                };
                if self.followed.len() < MAX_FOLLOWED {
                    self.followed.insert(request_id.to_owned(), followed);
                } else {
                    tracing::debug!("too many widget requests pending to follow one more");
                }
                return vec![Output::ToDriver(text.to_owned())];
            }
        };
        message.insert("response".into(), reply);
        vec![Output::ToPage(Value::Object(message).to_string()), Output::Event(action)]
    }

    /// A message from the driver: posted to the widget as it is, after reading the answers to
    /// the widget's requests.
    pub fn driver_message(&mut self, text: String) -> Output {
        let Ok(Value::Object(mut message)) = serde_json::from_str::<Value>(&text) else {
            return Output::ToPage(text);
        };
        let is_answer = message.get("api").and_then(Value::as_str) == Some("fromWidget")
            && message.contains_key("response");
        let request_id = message.get("requestId").and_then(Value::as_str);
        let followed = match (is_answer, request_id) {
            (true, Some(id)) => self.followed.remove(id),
            _ => None,
        };
        let Some(followed) = followed else { return Output::ToPage(text) };
        let response = &mut message["response"];
        if !response.is_object() || response.get("error").is_some() {
            return Output::ToPage(text);
        }
        match followed {
            Followed::DelayedSend => {
                if let Some(delay_id) = response.get("delay_id").and_then(Value::as_str) {
                    self.scheduled.insert(delay_id.to_owned());
                }
            }
            Followed::DelayedEnd { delay_id } => {
                self.scheduled.remove(&delay_id);
            }
            Followed::Versions => {
                if let Some(Value::Array(versions)) = response.get_mut("supported_versions")
                    && !versions.iter().any(|v| v == RTC_TRANSPORTS_VERSION)
                {
                    versions.push(RTC_TRANSPORTS_VERSION.into());
                    return Output::ToPage(Value::Object(message).to_string());
                }
            }
            Followed::Plain => {}
        }
        Output::ToPage(text)
    }

    /// The host's answer to a request of the widget (`request` as the widget sent it).
    pub fn answer(request: &str, response: Value) -> Output {
        let mut message: Value = serde_json::from_str(request).unwrap_or_default();
        message["response"] = response;
        Output::ToPage(message.to_string())
    }

    /// The host's request that the widget leave the call (as its own hang-up button does).
    pub fn hang_up(&mut self) -> Output {
        self.host_request("im.vector.hangup", json!({}))
    }

    /// The host's request that tells the widget of new room state (`events`, each with its
    /// `room_id`), as the driver does for state it learns outside the timeline.
    pub fn update_state(&mut self, events: Vec<Value>) -> Output {
        self.host_request("update_state", json!({ "state": events }))
    }

    fn host_request(&mut self, action: &str, data: Value) -> Output {
        let request_id = format!("{HOST_REQUEST_PREFIX}{}", self.next_host_request);
        self.next_host_request += 1;
        if self.host_requests.len() < MAX_FOLLOWED {
            self.host_requests.insert(request_id.clone());
        }
        let request = json!({
            "api": "toWidget",
            "widgetId": self.widget_id,
            "requestId": request_id,
            "action": action,
            "data": data,
        });
        Output::ToPage(request.to_string())
    }

    /// Whether every request of the widget has its answer from the driver.
    pub fn driver_idle(&self) -> bool {
        self.followed.is_empty()
    }

    /// The widget's delayed events that are still scheduled (its leave, if it did not leave).
    pub fn scheduled_delayed_events(&self) -> impl Iterator<Item = &str> {
        self.scheduled.iter().map(String::as_str)
    }
}

/// A short string field of a widget message.
fn name_field<'a>(message: &'a Map<String, Value>, name: &'static str) -> Result<&'a str, Refusal> {
    match message.get(name).and_then(Value::as_str) {
        Some(value) if !value.is_empty() && value.len() <= MAX_NAME_LEN => Ok(value),
        _ => Err(Refusal::Field(name)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WIDGET: &str = "ec";

    fn request(action: &str, id: &str, data: Value) -> String {
        json!({"api": "fromWidget", "widgetId": WIDGET, "requestId": id, "action": action, "data": data})
            .to_string()
    }

    fn answer(request: &str, response: Value) -> String {
        let mut value: Value = serde_json::from_str(request).unwrap();
        value["response"] = response;
        value.to_string()
    }

    #[test]
    fn requests_for_the_driver_go_to_the_driver_unchanged() {
        let mut relay = Relay::new(WIDGET, true);
        let text =
            request("send_event", "widgetapi-1", json!({"type": "m.reaction", "content": {}}));
        assert_eq!(relay.page_message(&text).unwrap(), vec![Output::ToDriver(text.clone())]);
        assert!(!relay.driver_idle());
        let reply = answer(&text, json!({"event_id": "$e"}));
        assert_eq!(relay.driver_message(reply.clone()), Output::ToPage(reply));
        assert!(relay.driver_idle());
    }

    #[test]
    fn the_hosts_actions_are_answered_by_the_host() {
        let mut relay = Relay::new(WIDGET, true);
        for (action, data, event) in [
            ("io.element.join", json!({}), WidgetAction::Joined),
            ("im.vector.hangup", json!({}), WidgetAction::HungUp),
            ("io.element.close", json!({}), WidgetAction::Closed),
            (
                "io.element.device_mute",
                json!({"audio_enabled": false, "video_enabled": true}),
                WidgetAction::DeviceMute { audio: Some(false), video: Some(true) },
            ),
        ] {
            let text = request(action, "widgetapi-7", data);
            let out = relay.page_message(&text).unwrap();
            let Output::ToPage(reply) = &out[0] else { panic!("{out:?}") };
            let reply: Value = serde_json::from_str(reply).unwrap();
            assert_eq!(reply["response"], json!({}));
            assert_eq!(reply["requestId"], "widgetapi-7");
            assert_eq!(out[1], Output::Event(event));
        }
        let out = relay
            .page_message(&request("set_always_on_screen", "w-8", json!({"value": true})))
            .unwrap();
        let [Output::ToPage(reply)] = &out[..] else { panic!("{out:?}") };
        assert!(reply.contains(r#""response":{"success":true}"#));
        assert!(relay.driver_idle());
    }

    #[test]
    fn malformed_or_foreign_messages_are_refused() {
        let mut relay = Relay::new(WIDGET, true);
        assert_eq!(relay.page_message("[1]"), Err(Refusal::NotAnObject));
        assert_eq!(relay.page_message("{"), Err(Refusal::NotAnObject));
        let other = json!({"api": "fromWidget", "widgetId": "other", "requestId": "r", "action": "send_event"});
        assert_eq!(relay.page_message(&other.to_string()), Err(Refusal::OtherWidget));
        let no_id = json!({"api": "fromWidget", "widgetId": WIDGET, "action": "send_event"});
        assert_eq!(relay.page_message(&no_id.to_string()), Err(Refusal::Field("requestId")));
        let long = json!({"api": "fromWidget", "widgetId": WIDGET, "requestId": "r".repeat(300), "action": "x"});
        assert_eq!(relay.page_message(&long.to_string()), Err(Refusal::Field("requestId")));
        let bad_api =
            json!({"api": "sideways", "widgetId": WIDGET, "requestId": "r", "action": "x"});
        assert_eq!(relay.page_message(&bad_api.to_string()), Err(Refusal::Field("api")));
        // The widget cannot speak for the driver: no toWidget requests, no fromWidget answers.
        let forged = json!({"api": "toWidget", "widgetId": WIDGET, "requestId": "r", "action": "openid_credentials", "data": {}});
        assert!(matches!(relay.page_message(&forged.to_string()), Err(Refusal::Direction(_))));
        let forged = answer(&request("send_event", "r", json!({})), json!({}));
        assert!(matches!(relay.page_message(&forged), Err(Refusal::Direction(_))));
    }

    #[test]
    fn answers_to_the_hosts_requests_stay_with_the_host() {
        let mut relay = Relay::new(WIDGET, true);
        let Output::ToPage(hangup) = relay.hang_up() else { panic!() };
        let value: Value = serde_json::from_str(&hangup).unwrap();
        assert_eq!(value["action"], "im.vector.hangup");
        assert_eq!(value["api"], "toWidget");
        assert_eq!(relay.page_message(&answer(&hangup, json!({}))).unwrap(), vec![]);
        // The driver's own requests' answers still reach it.
        let drivers = json!({"api": "toWidget", "widgetId": WIDGET, "requestId": "8e1c9d6a-0f0e-4a37-9a53-1f4f6f2ad0a1", "action": "capabilities", "data": {}}).to_string();
        let reply = answer(&drivers, json!({"capabilities": []}));
        assert_eq!(relay.page_message(&reply).unwrap(), vec![Output::ToDriver(reply)]);
        // A second answer to the same host request is not the host's any more.
        assert_eq!(relay.page_message(&answer(&hangup, json!({}))).unwrap().len(), 1);
        let Output::ToPage(update) = relay.update_state(vec![json!({"type": "m.room.name"})])
        else {
            panic!()
        };
        let value: Value = serde_json::from_str(&update).unwrap();
        assert_eq!(value["action"], "update_state");
        assert_eq!(value["data"]["state"][0]["type"], "m.room.name");
        assert_ne!(
            value["requestId"],
            serde_json::from_str::<Value>(&hangup).unwrap()["requestId"]
        );
        assert_eq!(relay.page_message(&answer(&update, json!({}))).unwrap(), vec![]);
    }

    #[test]
    fn delayed_leaves_are_followed_until_sent_or_cancelled() {
        let mut relay = Relay::new(WIDGET, true);
        let schedule = |relay: &mut Relay, id: &str, delay_id: &str| {
            let text = request(
                "send_event",
                id,
                json!({"type": "org.matrix.msc3401.call.member", "state_key": "_@a:b_D_m.call", "content": {}, "delay": 18000}),
            );
            relay.page_message(&text).unwrap();
            relay.driver_message(answer(&text, json!({"room_id": "!r:b", "delay_id": delay_id})));
        };
        schedule(&mut relay, "w-1", "d1");
        schedule(&mut relay, "w-2", "d2");
        // A failed schedule leaves nothing behind.
        let failed = request("send_event", "w-3", json!({"type": "x", "content": {}, "delay": 5}));
        relay.page_message(&failed).unwrap();
        relay.driver_message(answer(&failed, json!({"error": {"message": "no"}})));
        assert_eq!(relay.scheduled_delayed_events().collect::<Vec<_>>(), ["d1", "d2"]);

        let update = |relay: &mut Relay, id: &str, action: &str, delay_id: &str, ok: bool| {
            let text = request(
                "org.matrix.msc4157.update_delayed_event",
                id,
                json!({"action": action, "delay_id": delay_id}),
            );
            relay.page_message(&text).unwrap();
            let response = if ok { json!({}) } else { json!({"error": {"message": "not found"}}) };
            relay.driver_message(answer(&text, response));
        };
        update(&mut relay, "w-4", "restart", "d1", true);
        update(&mut relay, "w-5", "cancel", "d2", false);
        assert_eq!(
            relay.scheduled_delayed_events().count(),
            2,
            "restarts and failures change nothing"
        );
        update(&mut relay, "w-6", "send", "d1", true);
        update(&mut relay, "w-7", "cancel", "d2", true);
        assert_eq!(relay.scheduled_delayed_events().count(), 0);
        assert!(relay.driver_idle());
    }

    #[test]
    fn the_host_serves_rtc_transports_and_says_so() {
        let mut relay = Relay::new(WIDGET, true);
        let versions = request("supported_api_versions", "w-1", json!({}));
        assert_eq!(
            relay.page_message(&versions).unwrap(),
            vec![Output::ToDriver(versions.clone())]
        );
        let Output::ToPage(reply) = relay.driver_message(answer(
            &versions,
            json!({"supported_versions": ["0.0.2", "org.matrix.msc2762"]}),
        )) else {
            panic!()
        };
        let reply: Value = serde_json::from_str(&reply).unwrap();
        assert_eq!(
            reply["response"]["supported_versions"],
            json!(["0.0.2", "org.matrix.msc2762", "org.matrix.msc4515"])
        );

        let ask = request("org.matrix.msc4515.get_rtc_transports", "w-2", json!({}));
        let out = relay.page_message(&ask).unwrap();
        let [Output::AskTransports(held)] = &out[..] else { panic!("{out:?}") };
        let Output::ToPage(reply) = Relay::answer(held, json!({"rtc_transports": []})) else {
            panic!()
        };
        let reply: Value = serde_json::from_str(&reply).unwrap();
        assert_eq!(reply["requestId"], "w-2");
        assert_eq!(reply["response"], json!({"rtc_transports": []}));

        // A host that does not serve them leaves both to the driver.
        let mut relay = Relay::new(WIDGET, false);
        assert_eq!(relay.page_message(&ask).unwrap(), vec![Output::ToDriver(ask.clone())]);
        let plain = answer(&versions, json!({"supported_versions": ["0.0.2"]}));
        relay.page_message(&versions).unwrap();
        assert_eq!(relay.driver_message(plain.clone()), Output::ToPage(plain));
    }

    #[test]
    fn the_drivers_own_messages_pass_even_when_not_understood() {
        let mut relay = Relay::new(WIDGET, true);
        assert_eq!(relay.driver_message("not json".into()), Output::ToPage("not json".into()));
    }
}

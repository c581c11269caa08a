//! Delegated delayed leaves through the real service, with a homeserver and a LiveKit server API
//! played in this process: what the service restarts, sends and answers for each turn of a
//! member's connection. (The same against Synapse, LiveKit and Element Call is in the
//! `rtc-livekit-join` tests.)

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use common::{post as post_body, raw_config, spawn_service};
use matrixrtc_auth::identity::{hashed_identity, legacy_identity, livekit_room_alias};
use matrixrtc_auth::secret::Secret;
use matrixrtc_auth::webhook;
use serde_json::{Value, json};

const SERVER: &str = "example.test";
const USER: &str = "@alice:example.test";
const ROOM: &str = "!call:example.test";
const KEY: &str = "devkey";
const SECRET: &str = "a-secret-of-32-characters-or-more";

/// What the fake homeserver and SFU saw and will answer.
#[derive(Default)]
struct World {
    /// `(delay id, action, when)` of every delayed-event request.
    calls: Vec<(String, String, Instant)>,
    /// The status a delay id's requests get (200 when absent).
    statuses: HashMap<String, u16>,
    /// Participants on the SFU: identity → sid.
    present: HashMap<String, String>,
}

type Shared = Arc<Mutex<World>>;

struct Fakes {
    world: Shared,
    service: String,
}

impl Fakes {
    /// Starts the fakes and the service (delegation on, with `sanity_check` seconds).
    async fn start(sanity_check: u64) -> Self {
        Self::start_with(sanity_check, true).await
    }

    async fn start_with(sanity_check: u64, delegation: bool) -> Self {
        let world = Shared::default();
        let homeserver = serve(
            Router::new()
                .route("/_matrix/federation/v1/openid/userinfo", get(userinfo))
                .route(
                    "/_matrix/client/unstable/org.matrix.msc4140/delayed_events/{id}/{action}",
                    post(delayed_event),
                )
                .with_state(world.clone()),
        )
        .await;
        let sfu = serve(
            Router::new()
                .route("/twirp/livekit.RoomService/CreateRoom", post(create_room))
                .route("/twirp/livekit.RoomService/GetParticipant", post(get_participant))
                .with_state(world.clone()),
        )
        .await;
        let mut raw = raw_config(&sfu.replace("http", "ws"), KEY, SECRET, SERVER);
        raw.federation_overrides = vec![format!("{SERVER}={homeserver}")];
        raw.cs_api_url_overrides = vec![format!("{SERVER}={homeserver}")];
        raw.sanity_check_interval_seconds = Some(sanity_check);
        raw.delegation = Some(delegation);
        raw.outbound_timeout_ms = 2000;
        let service = spawn_service(raw).await;
        Self { world, service }
    }

    fn world(&self) -> std::sync::MutexGuard<'_, World> {
        self.world.lock().unwrap()
    }

    fn connect(&self, identity: &str, sid: &str) {
        self.world().present.insert(identity.into(), sid.into());
    }

    fn disconnect(&self, identity: &str) {
        self.world().present.remove(identity);
    }

    /// The actions asked for `delay_id`, in order.
    fn actions(&self, delay_id: &str) -> Vec<String> {
        self.world().calls.iter().filter(|c| c.0 == delay_id).map(|c| c.1.clone()).collect()
    }

    async fn post(&self, path: &str, body: Value) -> common::Answer {
        post_body(&format!("{}{path}", self.service), body.to_string()).await
    }

    /// Posts a webhook signed as LiveKit does.
    async fn webhook(&self, event: &str, identity: &str, sid: &str, reason: &str) -> StatusCode {
        let body = json!({
            "event": event,
            "room": {"name": livekit_room_alias(ROOM, "m.call#ROOM"), "sid": "RM_1"},
            "participant": {"identity": identity, "sid": sid, "disconnectReason": reason},
            "id": "EV_1", "createdAt": "1780000000",
        })
        .to_string();
        let token = webhook::sign(body.as_bytes(), KEY, &Secret::new(SECRET), SystemTime::now());
        let response = common::http()
            .post(format!("{}/sfu_webhook", self.service))
            .header("authorization", token)
            .header("content-type", "application/webhook+json")
            .body(body)
            .send()
            .await
            .unwrap();
        response.status()
    }
}

async fn serve(router: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    format!("http://{address}")
}

async fn userinfo(RawQuery(query): RawQuery) -> impl IntoResponse {
    match query.as_deref().and_then(|q| q.split('&').find_map(|p| p.strip_prefix("access_token=")))
    {
        Some("good") => (StatusCode::OK, axum::Json(json!({"sub": USER}))),
        _ => (StatusCode::UNAUTHORIZED, axum::Json(json!({"errcode": "M_UNKNOWN_TOKEN"}))),
    }
}

async fn delayed_event(
    State(world): State<Shared>,
    Path((id, action)): Path<(String, String)>,
) -> impl IntoResponse {
    let mut world = world.lock().unwrap();
    world.calls.push((id.clone(), action, Instant::now()));
    let status = world.statuses.get(&id).copied().unwrap_or(200);
    (StatusCode::from_u16(status).unwrap(), axum::Json(json!({"retry_after_ms": 100})))
}

async fn create_room(axum::Json(body): axum::Json<Value>) -> axum::Json<Value> {
    axum::Json(json!({"sid": "RM_1", "name": body["name"]}))
}

async fn get_participant(
    State(world): State<Shared>,
    axum::Json(body): axum::Json<Value>,
) -> impl IntoResponse {
    let identity = body["identity"].as_str().unwrap_or_default();
    match world.lock().unwrap().present.get(identity) {
        Some(sid) => (
            StatusCode::OK,
            axum::Json(json!({"sid": sid, "identity": identity, "state": "ACTIVE"})),
        ),
        None => (
            StatusCode::NOT_FOUND,
            axum::Json(json!({"code": "not_found", "msg": "participant not found"})),
        ),
    }
}

fn token(access_token: &str, server: &str) -> Value {
    json!({"access_token": access_token, "token_type": "Bearer", "matrix_server_name": server, "expires_in": 3600})
}

fn delegate_body(delay_id: &str, delay_ms: u64, member: &str) -> Value {
    json!({
        "room_id": ROOM, "slot_id": "m.call#ROOM", "openid_token": token("good", SERVER),
        "member": {"id": member, "claimed_user_id": USER, "claimed_device_id": "DEV"},
        "delay_id": delay_id, "delay_timeout": delay_ms,
        "delay_cs_api_url": "http://attacker.invalid/",
    })
}

/// Waits until `check` holds, for at most `within`.
async fn eventually(within: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !check() {
        assert!(Instant::now() < deadline, "not within {within:?}: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_connected_member_is_kept_alive_until_its_connection_ends() {
    let fakes = Fakes::start(0).await;
    let identity = legacy_identity(USER, "DEV");
    fakes.connect(&identity, "PA_1");
    // Element Call delegates through /sfu/get, after it has connected.
    let answer = fakes
        .post(
            "/sfu/get",
            json!({"room": ROOM, "openid_token": token("good", SERVER), "device_id": "DEV",
                   "delay_id": "syd_a", "delay_timeout": 1500,
                   "delay_cs_api_url": "http://attacker.invalid/"}),
        )
        .await;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    assert!(answer.body["jwt"].is_string());

    // Restarted at once, then every 80 % of 1.5 s.
    tokio::time::sleep(Duration::from_millis(3100)).await;
    let restarts = fakes.actions("syd_a");
    assert!(restarts.iter().all(|a| a == "restart"), "{restarts:?}");
    assert!((3..=5).contains(&restarts.len()), "{restarts:?}");
    let times: Vec<Instant> = fakes.world().calls.iter().map(|c| c.2).collect();
    for pair in times.windows(2).skip(1) {
        let gap = pair[1] - pair[0];
        assert!(gap >= Duration::from_millis(1100) && gap < Duration::from_millis(1500), "{gap:?}");
    }

    // An older session's departure changes nothing; this one's is confirmed and sent.
    assert_eq!(fakes.webhook("participant_left", &identity, "PA_0", "CLIENT_INITIATED").await, 200);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!fakes.actions("syd_a").contains(&"send".to_owned()));
    fakes.disconnect(&identity);
    let left = Instant::now();
    assert_eq!(fakes.webhook("participant_left", &identity, "PA_1", "SIGNAL_CLOSE").await, 200);
    eventually(Duration::from_secs(2), "the leave is sent", || {
        fakes.actions("syd_a").last().is_some_and(|a| a == "send")
    })
    .await;
    assert!(left.elapsed() < Duration::from_millis(500), "{:?}", left.elapsed());
    // And nothing more happens for it.
    let count = fakes.actions("syd_a").len();
    tokio::time::sleep(Duration::from_millis(1600)).await;
    assert_eq!(fakes.actions("syd_a").len(), count);
}

#[tokio::test]
async fn a_member_whose_media_dies_without_a_webhook_is_found_gone_by_the_sanity_check() {
    let fakes = Fakes::start(1).await;
    let identity = hashed_identity(USER, "DEV", "m1");
    fakes.connect(&identity, "PA_1");
    let answer = fakes.post("/delegate_delayed_leave", delegate_body("syd_b", 60_000, "m1")).await;
    assert_eq!((answer.status.as_u16(), &answer.body), (200, &json!({})));
    eventually(Duration::from_secs(2), "restarted", || !fakes.actions("syd_b").is_empty()).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(fakes.actions("syd_b"), ["restart"], "one restart a minute");
    fakes.disconnect(&identity);
    eventually(Duration::from_secs(3), "sent after the SFU lost the member", || {
        fakes.actions("syd_b") == ["restart", "send"]
    })
    .await;
}

#[tokio::test]
async fn a_member_that_reconnects_is_followed_and_a_newer_delegation_replaces_the_older() {
    let fakes = Fakes::start(0).await;
    let identity = hashed_identity(USER, "DEV", "m1");
    fakes.connect(&identity, "PA_1");
    fakes.post("/delegate_delayed_leave", delegate_body("syd_old", 60_000, "m1")).await;
    eventually(Duration::from_secs(2), "restarted", || !fakes.actions("syd_old").is_empty()).await;

    // A duplicate identity replaces the connection: the old one's departure comes first.
    fakes.connect(&identity, "PA_2");
    fakes.webhook("participant_left", &identity, "PA_1", "DUPLICATE_IDENTITY").await;
    fakes.webhook("participant_joined", &identity, "PA_2", "").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(fakes.actions("syd_old"), ["restart"]);

    // The client's new delayed leave is delegated: only it is touched from now on.
    fakes.post("/delegate_delayed_leave", delegate_body("syd_new", 60_000, "m1")).await;
    eventually(Duration::from_secs(2), "restarted", || !fakes.actions("syd_new").is_empty()).await;
    fakes.disconnect(&identity);
    fakes.webhook("participant_connection_aborted", &identity, "PA_2", "CONNECTION_TIMEOUT").await;
    eventually(Duration::from_secs(2), "sent", || fakes.actions("syd_new") == ["restart", "send"])
        .await;
    assert_eq!(fakes.actions("syd_old"), ["restart"]);
}

#[tokio::test]
async fn the_homeserver_answers_decide_when_a_job_ends() {
    let fakes = Fakes::start(0).await;
    // A restart answered 404 (the client sent or cancelled its leave): the job ends, no send.
    let identity = hashed_identity(USER, "DEV", "m1");
    fakes.connect(&identity, "PA_1");
    fakes.world().statuses.insert("syd_gone".into(), 404);
    fakes.post("/delegate_delayed_leave", delegate_body("syd_gone", 1200, "m1")).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(fakes.actions("syd_gone"), ["restart"]);
    fakes.disconnect(&identity);
    fakes.webhook("participant_left", &identity, "PA_1", "CLIENT_INITIATED").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(fakes.actions("syd_gone"), ["restart"]);

    // Rate limited: retried after the homeserver's `retry_after_ms`, then through.
    let other = hashed_identity(USER, "DEV", "m2");
    fakes.connect(&other, "PA_3");
    fakes.world().statuses.insert("syd_busy".into(), 429);
    fakes.post("/delegate_delayed_leave", delegate_body("syd_busy", 60_000, "m2")).await;
    eventually(Duration::from_secs(3), "retried", || fakes.actions("syd_busy").len() >= 2).await;
    fakes.world().statuses.remove("syd_busy");
    let count = fakes.actions("syd_busy").len();
    eventually(Duration::from_secs(5), "restarted at last", || {
        fakes.actions("syd_busy").len() > count
    })
    .await;
    let settled = fakes.actions("syd_busy").len();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(fakes.actions("syd_busy").len(), settled, "no more retries after a success");
}

#[tokio::test]
async fn a_member_that_never_connects_gets_its_leave_sent_when_the_wait_runs_out() {
    let fakes = Fakes::start(0).await;
    let started = Instant::now();
    fakes.post("/delegate_delayed_leave", delegate_body("syd_never", 1500, "m1")).await;
    eventually(Duration::from_secs(3), "sent", || fakes.actions("syd_never") == ["send"]).await;
    assert!(started.elapsed() >= Duration::from_millis(1450), "{:?}", started.elapsed());
}

#[tokio::test]
async fn delegation_requests_are_checked_like_lk_jwt_service() {
    let fakes = Fakes::start(0).await;
    // The probe Element Call sends.
    let probe = common::http().post(format!("{}/delegate_delayed_leave", fakes.service));
    let probe = probe.send().await.unwrap();
    assert_eq!(probe.status(), 400);
    assert_eq!(probe.headers()["access-control-allow-origin"], "*");
    let get = common::http().get(format!("{}/delegate_delayed_leave", fakes.service));
    assert_eq!(get.send().await.unwrap().status(), 405);

    let mut bad_token = delegate_body("syd_x", 1000, "m");
    bad_token["openid_token"] = token("bad", SERVER);
    let answer = fakes.post("/delegate_delayed_leave", bad_token).await;
    assert_eq!((answer.status.as_u16(), answer.errcode()), (401, "M_UNAUTHORIZED"));

    let mut someone_else = delegate_body("syd_x", 1000, "m");
    someone_else["member"]["claimed_user_id"] = json!("@mallory:example.test");
    let answer = fakes.post("/delegate_delayed_leave", someone_else).await;
    assert_eq!((answer.status.as_u16(), answer.errcode()), (401, "M_UNAUTHORIZED"));

    let mut no_delay = delegate_body("syd_x", 1000, "m");
    no_delay.as_object_mut().unwrap().remove("delay_timeout");
    let answer = fakes.post("/delegate_delayed_leave", no_delay).await;
    assert_eq!((answer.status.as_u16(), answer.errcode()), (400, "M_BAD_JSON"));
    assert!(fakes.world().calls.is_empty(), "nothing was delegated");
}

#[tokio::test]
async fn restricted_homeservers_and_unknown_client_apis_cannot_delegate() {
    let fakes = Fakes::start(0).await;
    // A homeserver that vouches for alice (its client-server API is never asked).
    let homeserver = serve(
        Router::new()
            .route("/_matrix/federation/v1/openid/userinfo", get(userinfo))
            .with_state(fakes.world.clone()),
    )
    .await;
    // Only only.test has full access.
    let mut restricted = raw_config("ws://127.0.0.1:9", KEY, SECRET, "only.test");
    restricted.federation_overrides = vec![format!("{SERVER}={homeserver}")];
    restricted.outbound_timeout_ms = 2000;
    let service = spawn_service(restricted).await;
    let answer = post_body(
        &format!("{service}/delegate_delayed_leave"),
        delegate_body("syd_x", 1000, "m").to_string(),
    )
    .await;
    assert_eq!((answer.status.as_u16(), answer.errcode()), (403, "M_FORBIDDEN"));
    // Through /sfu/get the refusal is 400 M_BAD_JSON, on which Element Call asks again without
    // the delay fields.
    let sfu_get = json!({"room": ROOM, "openid_token": token("good", SERVER), "device_id": "DEV",
                         "delay_id": "syd_x", "delay_timeout": 1000});
    let answer = post_body(&format!("{service}/sfu/get"), sfu_get.to_string()).await;
    assert_eq!((answer.status.as_u16(), answer.errcode()), (400, "M_BAD_JSON"));
    assert!(answer.body["error"].as_str().unwrap().contains("full access"));

    // A full-access homeserver whose client-server API cannot be found (no override, and no
    // `.well-known/matrix/client` at https://example.test).
    let mut unknown = raw_config("ws://127.0.0.1:9", KEY, SECRET, "*");
    unknown.federation_overrides = vec![format!("{SERVER}={homeserver}")];
    unknown.outbound_timeout_ms = 2000;
    let service = spawn_service(unknown).await;
    let answer = post_body(
        &format!("{service}/delegate_delayed_leave"),
        delegate_body("syd_x", 1000, "m").to_string(),
    )
    .await;
    assert_eq!((answer.status.as_u16(), answer.errcode()), (400, "M_BAD_JSON"));
    assert_eq!(answer.body["error"], "Unable to resolve client-server API");
}

#[tokio::test]
async fn webhooks_must_be_signed_by_the_livekit_key() {
    let fakes = Fakes::start(0).await;
    let body = r#"{"event":"participant_left","room":{"name":"R"},"participant":{"identity":"i"}}"#;
    let send = |authorization: Option<String>| {
        let mut request = common::http().post(format!("{}/sfu_webhook", fakes.service)).body(body);
        if let Some(value) = authorization {
            request = request.header("authorization", value);
        }
        request.send()
    };
    assert_eq!(send(None).await.unwrap().status(), 401);
    let forged = webhook::sign(body.as_bytes(), KEY, &Secret::new("wrong"), SystemTime::now());
    assert_eq!(send(Some(forged)).await.unwrap().status(), 401);
    let signed = webhook::sign(body.as_bytes(), KEY, &Secret::new(SECRET), SystemTime::now());
    assert_eq!(send(Some(signed)).await.unwrap().status(), 200, "a participant without a job");
    let room_event = r#"{"event":"room_finished","room":{"name":"R"}}"#;
    let signed = webhook::sign(room_event.as_bytes(), KEY, &Secret::new(SECRET), SystemTime::now());
    let response = common::http()
        .post(format!("{}/sfu_webhook", fakes.service))
        .header("authorization", signed)
        .body(room_event)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn with_delegation_off_the_route_is_absent_and_the_fields_ignored() {
    let fakes = Fakes::start_with(0, false).await;
    let answer = fakes.post("/delegate_delayed_leave", delegate_body("syd_off", 1000, "m")).await;
    assert_eq!((answer.status.as_u16(), answer.errcode()), (404, "M_UNRECOGNIZED"));
    let answer = fakes
        .post(
            "/sfu/get",
            json!({"room": ROOM, "openid_token": token("good", SERVER), "device_id": "DEV",
                   "delay_id": "syd_off", "delay_timeout": 1000}),
        )
        .await;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(fakes.actions("syd_off").is_empty());
}

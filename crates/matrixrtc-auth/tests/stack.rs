//! The authorization service of the local stack, against the real Synapse and LiveKit server.
//!
//! Needs `cargo xtask devstack up` (or run everything with `cargo xtask test`).

mod common;

use common::{JoinError, call_room, jwt_claims, livekit_join, post, raw_config, spawn_service};
use matrixrtc_auth::identity::{hashed_identity, livekit_room_alias};
use rtc_test_support::StackInfo;
use serde_json::json;

#[tokio::test]
async fn sfu_get_token_joins_livekit_as_user_colon_device() {
    let call = call_room().await;
    let openid = call.hs.openid_token(&call.alice).await.unwrap();
    let answer = post(
        &format!("{}/sfu/get", call.stack.auth_service_url),
        json!({"room": call.room_id, "openid_token": openid, "device_id": "ALICEDEV"}).to_string(),
    )
    .await;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    assert_eq!(answer.body["url"], call.stack.livekit_url.as_str());
    assert_eq!(answer.headers["access-control-allow-origin"], "*");

    let join =
        livekit_join(&call.stack.livekit_url, answer.body["jwt"].as_str().unwrap()).await.unwrap();
    let participant = join.participant.expect("participant");
    assert_eq!(participant.identity, format!("{}:ALICEDEV", call.alice.user_id));
    let room = join.room.expect("room");
    assert_eq!(room.name, livekit_room_alias(&call.room_id, "m.call#ROOM"));
    // The same name computed from the definition: unpadded base64 of SHA-256 over the JSON array.
    assert_eq!(room.name.len(), 43);
}

#[tokio::test]
async fn get_token_joins_livekit_with_hashed_identity_and_room() {
    let call = call_room().await;
    let openid = call.hs.openid_token(&call.alice).await.unwrap();
    let member_id = "0f6e1a8c-5d43-4a6b-9b8e-member-test";
    let answer = post(
        &format!("{}/get_token", call.stack.auth_service_url),
        json!({
            "room_id": call.room_id, "slot_id": "m.call#ROOM", "openid_token": openid,
            "member": {"id": member_id, "claimed_user_id": call.alice.user_id, "claimed_device_id": "ALICEDEV"},
        })
        .to_string(),
    )
    .await;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    let join =
        livekit_join(&call.stack.livekit_url, answer.body["jwt"].as_str().unwrap()).await.unwrap();
    assert_eq!(
        join.participant.unwrap().identity,
        hashed_identity(&call.alice.user_id, "ALICEDEV", member_id)
    );
    assert_eq!(join.room.unwrap().name, livekit_room_alias(&call.room_id, "m.call#ROOM"));
}

#[tokio::test]
async fn get_token_with_delay_fields_gives_the_same_token() {
    let call = call_room().await;
    let openid = call.hs.openid_token(&call.alice).await.unwrap();
    let answer = post(
        &format!("{}/get_token", call.stack.auth_service_url),
        json!({
            "room_id": call.room_id, "slot_id": "m.call#ROOM", "openid_token": openid,
            "member": {"id": "m", "claimed_user_id": call.alice.user_id, "claimed_device_id": "ALICEDEV"},
            "delay_id": "syd_not_delegated", "delay_timeout": 10000, "delay_cs_api_url": call.stack.homeserver_url,
        })
        .to_string(),
    )
    .await;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    // The delay fields hand the delayed leave over (this one is unknown to the homeserver, so
    // the job ends when its send is answered 404) and change nothing in the token: the same
    // identity, room and grants as without them.
    assert_eq!(answer.body["url"], call.stack.livekit_url.as_str());
    let claims = jwt_claims(answer.body["jwt"].as_str().expect("a jwt"));
    assert_eq!(claims["sub"], hashed_identity(&call.alice.user_id, "ALICEDEV", "m"));
    assert_eq!(claims["iss"], call.stack.livekit_api_key.as_str());
    assert_eq!(claims["video"]["room"], livekit_room_alias(&call.room_id, "m.call#ROOM"));
    assert_eq!(claims["video"]["roomJoin"], true);
}

#[tokio::test]
async fn synapse_advertises_the_authorization_service() {
    let call = call_room().await;
    let transports = call
        .hs
        .get(&call.bob, "/_matrix/client/unstable/org.matrix.msc4143/rtc/transports")
        .await
        .unwrap();
    assert_eq!(
        transports,
        json!({"rtc_transports": [{"type": "livekit", "livekit_service_url": call.stack.auth_service_url}]})
    );
    let well_known = call.hs.get_public("/.well-known/matrix/client").await.unwrap();
    assert_eq!(
        well_known["org.matrix.msc4143.rtc_foci"],
        json!([{"type": "livekit", "livekit_service_url": call.stack.auth_service_url}])
    );
    let versions = call.hs.get_public("/_matrix/client/versions").await.unwrap();
    for feature in ["org.matrix.msc4140", "org.matrix.msc4143", "org.matrix.msc4354"] {
        assert_eq!(versions["unstable_features"][feature], true, "{feature}");
    }
}

/// A user of a homeserver that is not full-access gets a token but no room: with the stack's
/// LiveKit (`room.auto_create: false`) the join fails until a full-access user created the room,
/// exactly as with lk-jwt-service.
#[tokio::test]
async fn restricted_users_do_not_create_rooms() {
    let call = call_room().await;
    let stack = &call.stack;
    let mut raw = raw_config(
        &stack.livekit_url,
        &stack.livekit_api_key,
        &stack.livekit_api_secret,
        "other.example",
    );
    raw.federation_overrides = vec![format!("{}={}", stack.server_name, stack.homeserver_url)];
    let restricted = spawn_service(raw).await;

    let request = |openid| {
        json!({"room": call.room_id, "openid_token": openid, "device_id": "ALICEDEV"}).to_string()
    };
    let answer = post(
        &format!("{restricted}/sfu/get"),
        request(call.hs.openid_token(&call.alice).await.unwrap()),
    )
    .await;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    let jwt = answer.body["jwt"].as_str().unwrap().to_owned();
    match livekit_join(&stack.livekit_url, &jwt).await {
        Err(JoinError::Refused(404, body)) => {
            assert!(body.contains("room does not exist"), "{body}")
        }
        other => panic!("expected 404 room does not exist, got {other:?}"),
    }

    // Once a full-access user asked the stack's service, the room exists and the same token works.
    let answer = post(
        &format!("{}/sfu/get", stack.auth_service_url),
        request(call.hs.openid_token(&call.bob).await.unwrap()),
    )
    .await;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    assert_eq!(answer.body["url"], stack.livekit_url.as_str());
    let join = livekit_join(&stack.livekit_url, &jwt).await.expect("the room exists now");
    assert_eq!(join.participant.unwrap().identity, format!("{}:ALICEDEV", call.alice.user_id));
}

// ---- bad input, one test per class, against the stack's service ----

fn auth(path: &str) -> String {
    format!("{}{path}", StackInfo::require().auth_service_url)
}

#[tokio::test]
async fn malformed_json_is_m_not_json() {
    for path in ["/sfu/get", "/get_token"] {
        for body in ["", "{", "not json", "[]", "{\"room\": }"] {
            let answer = post(&auth(path), body).await;
            assert_eq!(
                (answer.status.as_u16(), answer.errcode()),
                (400, "M_NOT_JSON"),
                "{path} {body:?}"
            );
            assert_eq!(answer.body["error"], "Error reading request");
        }
    }
}

#[tokio::test]
async fn unknown_or_mistyped_fields_are_m_not_json() {
    let token = json!({"access_token": "t", "token_type": "Bearer", "matrix_server_name": "localhost", "expires_in": 3600});
    let cases = [
        (
            "/sfu/get",
            json!({"room": "!r:localhost", "openid_token": token, "device_id": "D", "extra": true}),
        ),
        ("/sfu/get", json!({"room": 42, "openid_token": token, "device_id": "D"})),
        (
            "/get_token",
            json!({"room_id": "!r", "slot_id": "m.call#ROOM", "openid_token": token,
            "member": {"id": "m", "claimed_user_id": "@a:localhost", "claimed_device_id": "D", "is_admin": true}}),
        ),
    ];
    for (path, body) in cases {
        let answer = post(&auth(path), body.to_string()).await;
        assert_eq!(
            (answer.status.as_u16(), answer.errcode()),
            (400, "M_NOT_JSON"),
            "{path} {body}"
        );
    }
}

#[tokio::test]
async fn missing_fields_are_m_bad_json() {
    let token = json!({"access_token": "t", "token_type": "Bearer", "matrix_server_name": "localhost", "expires_in": 3600});
    let cases = [
        ("/sfu/get", json!({"openid_token": token, "device_id": "D"})),
        ("/sfu/get", json!({"room": "!r:localhost", "device_id": "D"})),
        (
            "/sfu/get",
            json!({"room": "!r:localhost", "openid_token": token, "device_id": "D", "delay_id": "x"}),
        ),
        (
            "/get_token",
            json!({"room_id": "!r", "openid_token": token,
            "member": {"id": "m", "claimed_user_id": "@a:localhost", "claimed_device_id": "D"}}),
        ),
        (
            "/get_token",
            json!({"room_id": "!r", "slot_id": "m.call#ROOM", "openid_token": token, "member": {"id": "m"}}),
        ),
    ];
    for (path, body) in cases {
        let answer = post(&auth(path), body.to_string()).await;
        assert_eq!(
            (answer.status.as_u16(), answer.errcode()),
            (400, "M_BAD_JSON"),
            "{path} {body}"
        );
    }
}

#[tokio::test]
async fn oversized_bodies_are_m_too_large() {
    let padding = "x".repeat(100 * 1024);
    let body = json!({"room": padding, "openid_token": {}, "device_id": "D"}).to_string();
    let answer = post(&auth("/sfu/get"), body).await;
    assert_eq!((answer.status.as_u16(), answer.errcode()), (413, "M_TOO_LARGE"));
}

#[tokio::test]
async fn invalid_openid_token_is_unauthorized() {
    // Synapse answers M_UNKNOWN_TOKEN alike for unknown and expired tokens.
    let call = call_room().await;
    let body = json!({
        "room": call.room_id, "device_id": "ALICEDEV",
        "openid_token": {"access_token": "not-a-token", "token_type": "Bearer", "matrix_server_name": call.stack.server_name, "expires_in": 3600},
    });
    let answer = post(&format!("{}/sfu/get", call.stack.auth_service_url), body.to_string()).await;
    assert_eq!((answer.status.as_u16(), answer.errcode()), (401, "M_UNAUTHORIZED"));
    assert_eq!(answer.body["error"], "The request could not be authorised.");
}

#[tokio::test]
async fn claimed_user_that_does_not_match_the_token_is_unauthorized() {
    let call = call_room().await;
    let alice_token = call.hs.openid_token(&call.alice).await.unwrap();
    let body = json!({
        "room_id": call.room_id, "slot_id": "m.call#ROOM", "openid_token": alice_token,
        "member": {"id": "m", "claimed_user_id": call.bob.user_id, "claimed_device_id": call.bob.device_id},
    });
    let answer =
        post(&format!("{}/get_token", call.stack.auth_service_url), body.to_string()).await;
    assert_eq!((answer.status.as_u16(), answer.errcode()), (401, "M_UNAUTHORIZED"));

    // The same token presented as coming from a server that does not answer: 502, not a token.
    let mut token = call.hs.openid_token(&call.alice).await.unwrap();
    token["matrix_server_name"] = json!("127.0.0.1:1");
    let body = json!({"room": call.room_id, "openid_token": token, "device_id": "ALICEDEV"});
    let answer = post(&format!("{}/sfu/get", call.stack.auth_service_url), body.to_string()).await;
    assert_eq!((answer.status.as_u16(), answer.errcode()), (502, "M_UNKNOWN"));
}

#[tokio::test]
async fn cors_methods_and_routes_answer_like_lk_jwt_service() {
    let http = common::http();
    for path in ["/sfu/get", "/get_token", "/delegate_delayed_leave"] {
        let response = http.request(reqwest::Method::OPTIONS, auth(path)).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
        let headers = response.headers();
        assert_eq!(headers["access-control-allow-origin"], "*");
        assert_eq!(headers["access-control-allow-methods"], "POST");
        assert!(headers["access-control-allow-headers"].to_str().unwrap().contains("Content-Type"));
    }
    let response = http.get(auth("/sfu/get")).send().await.unwrap();
    assert_eq!(response.status(), 405);
    assert_eq!(response.headers()["access-control-allow-origin"], "*");
    // Element Call probes delegation with an empty POST: anything but 404 (with CORS) means
    // the service takes delayed leaves over.
    let answer = post(&auth("/delegate_delayed_leave"), "").await;
    assert_eq!((answer.status.as_u16(), answer.errcode()), (400, "M_NOT_JSON"));
    assert_eq!(answer.headers["access-control-allow-origin"], "*");
    // The health check says everything in its status, with an empty body.
    let health = http.get(auth("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    assert_eq!(health.headers()["access-control-allow-origin"], "*");
    assert_eq!(health.text().await.unwrap(), "");
    let health = http.head(auth("/healthz")).send().await.unwrap();
    assert_eq!((health.status().as_u16(), health.content_length()), (200, Some(0)));
}

/// The stack's service (the `matrixrtc-auth` binary, which allows only `127.0.0.1` besides public
/// addresses) refuses tokens naming internal addresses as their homeserver: a cloud metadata
/// address, a private one, loopback other than the allowed address. Each is a 401 like any
/// failed verification, at once (nothing is tried), while the stack's own homeserver works.
#[tokio::test]
async fn the_stack_service_refuses_internal_homeservers() {
    let stack = StackInfo::require();
    let url = format!("{}/sfu/get", stack.auth_service_url);
    for server_name in [
        "169.254.169.254",
        "10.0.0.1:8448",
        "127.0.0.2:8448",
        "[::1]:8448",
        "[::ffff:169.254.169.254]",
    ] {
        let started = std::time::Instant::now();
        let body = json!({
            "room": "!room:example.test", "device_id": "DEV",
            "openid_token": {"access_token": "tok", "token_type": "Bearer", "matrix_server_name": server_name, "expires_in": 3600},
        });
        let answer = post(&url, body.to_string()).await;
        assert_eq!(
            (answer.status.as_u16(), answer.errcode(), answer.body["error"].as_str()),
            (401, "M_UNAUTHORIZED", Some("The request could not be authorised.")),
            "{server_name}"
        );
        assert!(started.elapsed() < std::time::Duration::from_secs(2), "{server_name}: tried");
    }
    let call = call_room().await;
    let openid = call.hs.openid_token(&call.alice).await.unwrap();
    let body = json!({"room": call.room_id, "openid_token": openid, "device_id": "ALICEDEV"});
    let answer = post(&url, body.to_string()).await;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
}

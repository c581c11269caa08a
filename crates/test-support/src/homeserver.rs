//! Homeserver helpers: registration, login, rooms, OpenID.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use serde::Deserialize;
use serde_json::{Value, json};
use sha1::Sha1;

use crate::{Error, StackInfo};

/// A logged-in Matrix user.
#[derive(Clone, Deserialize)]
pub struct User {
    /// The full user id.
    pub user_id: String,
    /// The device the access token belongs to.
    pub device_id: String,
    /// The access token.
    pub access_token: String,
}

impl std::fmt::Debug for User {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("User")
            .field("user_id", &self.user_id)
            .field("device_id", &self.device_id)
            .field("access_token", &"[redacted]")
            .finish()
    }
}

/// A name that no earlier test run used: `{prefix}-{pid}-{time}-{counter}`, lower case.
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_nanos();
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}-{}-{:x}-{n}", std::process::id(), nanos).to_lowercase()
}

/// The local stack's homeserver, driven over its HTTP APIs.
#[derive(Debug, Clone)]
pub struct Homeserver {
    http: reqwest::Client,
    base: String,
    shared_secret: String,
}

impl Homeserver {
    /// The homeserver of `stack`.
    pub fn new(stack: &StackInfo) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("a default reqwest client builds");
        Self {
            http,
            base: stack.homeserver_url.trim_end_matches('/').to_owned(),
            shared_secret: stack.registration_shared_secret.clone(),
        }
    }

    /// The client-server API base URL.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    async fn call(
        &self,
        what: &'static str,
        request: reqwest::RequestBuilder,
    ) -> Result<Value, Error> {
        let response = request
            .send()
            .await
            .map_err(|e| Error::Transport { what, reason: e.without_url().to_string() })?;
        let status = response.status();
        let body = response
            .text()
            .await
            .map_err(|e| Error::Transport { what, reason: e.without_url().to_string() })?;
        if !status.is_success() {
            return Err(Error::Status { what, status: status.as_u16(), body });
        }
        serde_json::from_str(&body).map_err(|e| Error::Transport { what, reason: e.to_string() })
    }

    /// Registers `username` with the shared-secret registration API
    /// (`/_synapse/admin/v1/register`, HMAC-SHA1 over `nonce NUL user NUL password NUL admin`).
    pub async fn register(
        &self,
        username: &str,
        password: &str,
        admin: bool,
    ) -> Result<User, Error> {
        let url = format!("{}/_synapse/admin/v1/register", self.base);
        let nonce = self.call("registration nonce", self.http.get(&url)).await?;
        let nonce = nonce["nonce"].as_str().unwrap_or_default().to_owned();
        let role = if admin { "admin" } else { "notadmin" };
        let mut mac = Hmac::<Sha1>::new_from_slice(self.shared_secret.as_bytes())
            .expect("HMAC accepts keys of any length");
        for (i, part) in [nonce.as_str(), username, password, role].iter().enumerate() {
            if i > 0 {
                mac.update(b"\0");
            }
            mac.update(part.as_bytes());
        }
        let body = json!({
            "nonce": nonce, "username": username, "password": password, "admin": admin,
            "mac": hex::encode(mac.finalize().into_bytes()),
        });
        let user = self.call("registration", self.http.post(&url).json(&body)).await?;
        serde_json::from_value(user)
            .map_err(|e| Error::Transport { what: "registration", reason: e.to_string() })
    }

    /// Registers a fresh non-admin user whose name starts with `prefix` (password = its name).
    pub async fn register_unique(&self, prefix: &str) -> Result<User, Error> {
        let name = unique_name(prefix);
        self.register(&name, &name, false).await
    }

    /// Logs `username` in with a chosen device id.
    pub async fn login(
        &self,
        username: &str,
        password: &str,
        device_id: &str,
    ) -> Result<User, Error> {
        let body = json!({
            "type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": username},
            "password": password,
            "device_id": device_id,
        });
        let url = format!("{}/_matrix/client/v3/login", self.base);
        let user = self.call("login", self.http.post(url).json(&body)).await?;
        serde_json::from_value(user)
            .map_err(|e| Error::Transport { what: "login", reason: e.to_string() })
    }

    /// Creates a private room as `creator`, inviting `invite`, with power levels that let every
    /// member send `org.matrix.msc3401.call.member` state and call events, as Element Web does.
    ///
    /// `power_level_content_override.events` replaces the server's whole default map, so the
    /// defaults are restated here.
    pub async fn create_call_room(
        &self,
        creator: &User,
        invite: &[&User],
    ) -> Result<String, Error> {
        self.create_room(creator, invite, false).await
    }

    /// The same room with `m.room.encryption` (Megolm) from the start: Element Call encrypts
    /// the media of calls in such rooms.
    pub async fn create_encrypted_call_room(
        &self,
        creator: &User,
        invite: &[&User],
    ) -> Result<String, Error> {
        self.create_room(creator, invite, true).await
    }

    async fn create_room(
        &self,
        creator: &User,
        invite: &[&User],
        encrypted: bool,
    ) -> Result<String, Error> {
        let initial_state = if encrypted {
            json!([{"type": "m.room.encryption", "state_key": "",
                    "content": {"algorithm": "m.megolm.v1.aes-sha2"}}])
        } else {
            json!([])
        };
        let body = json!({
            "initial_state": initial_state,
            "name": "MatrixRTC test call",
            "preset": "private_chat",
            "invite": invite.iter().map(|u| u.user_id.as_str()).collect::<Vec<_>>(),
            "power_level_content_override": {"events": {
                "m.room.name": 50, "m.room.power_levels": 100, "m.room.history_visibility": 100,
                "m.room.canonical_alias": 50, "m.room.avatar": 50, "m.room.tombstone": 100,
                "m.room.server_acl": 100, "m.room.encryption": 100,
                "org.matrix.msc3401.call.member": 0, "org.matrix.msc3401.call": 100,
                "org.matrix.msc4143.rtc.member": 0, "org.matrix.msc4075.rtc.notification": 0,
                "io.element.call.encryption_keys": 0, "io.element.call.reaction": 0,
                "org.matrix.msc4310.rtc.decline": 0
            }}
        });
        let url = format!("{}/_matrix/client/v3/createRoom", self.base);
        let room = self
            .call(
                "room creation",
                self.http.post(url).bearer_auth(&creator.access_token).json(&body),
            )
            .await?;
        room["room_id"].as_str().map(str::to_owned).ok_or_else(|| Error::Transport {
            what: "room creation",
            reason: format!("no room_id in {room}"),
        })
    }

    /// Invites `invitee` into `room_id` as `inviter`.
    pub async fn invite(&self, inviter: &User, room_id: &str, invitee: &User) -> Result<(), Error> {
        let url = format!(
            "{}/_matrix/client/v3/rooms/{}/invite",
            self.base,
            encode_path_segment(room_id)
        );
        let body = json!({"user_id": invitee.user_id});
        self.call("invite", self.http.post(url).bearer_auth(&inviter.access_token).json(&body))
            .await?;
        Ok(())
    }

    /// Joins `room_id` as `user`.
    pub async fn join(&self, user: &User, room_id: &str) -> Result<(), Error> {
        let url = format!("{}/_matrix/client/v3/join/{}", self.base, encode_path_segment(room_id));
        self.call("join", self.http.post(url).bearer_auth(&user.access_token).json(&json!({})))
            .await?;
        Ok(())
    }

    /// Requests an OpenID token for `user`; the answer is the object clients send to the
    /// authorization service.
    pub async fn openid_token(&self, user: &User) -> Result<Value, Error> {
        let url = format!(
            "{}/_matrix/client/v3/user/{}/openid/request_token",
            self.base,
            encode_path_segment(&user.user_id)
        );
        self.call(
            "OpenID token",
            self.http.post(url).bearer_auth(&user.access_token).json(&json!({})),
        )
        .await
    }

    /// `GET` an authenticated client-server API path (such as
    /// `/_matrix/client/unstable/org.matrix.msc4143/rtc/transports`) as `user`.
    pub async fn get(&self, user: &User, path: &str) -> Result<Value, Error> {
        let url = format!("{}{path}", self.base);
        self.call("GET", self.http.get(url).bearer_auth(&user.access_token)).await
    }

    /// `GET` an unauthenticated path (such as `/.well-known/matrix/client`).
    pub async fn get_public(&self, path: &str) -> Result<Value, Error> {
        self.call("GET", self.http.get(format!("{}{path}", self.base))).await
    }
}

/// Percent-encodes a URL path segment (room ids, user ids, state keys).
pub fn encode_path_segment(segment: &str) -> String {
    url::form_urlencoded::byte_serialize(segment.as_bytes()).collect::<String>().replace('+', "%20")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unique_names_are_unique_and_valid_localparts() {
        let a = unique_name("Alice");
        let b = unique_name("Alice");
        assert_ne!(a, b);
        assert!(
            a.bytes().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-'),
            "{a}"
        );
    }

    #[test]
    fn encodes_path_segments() {
        assert_eq!(encode_path_segment("!abc:localhost"), "%21abc%3Alocalhost");
        assert_eq!(encode_path_segment("@a b:x"), "%40a%20b%3Ax");
    }

    #[test]
    fn debug_hides_the_access_token() {
        let user = User {
            user_id: "@a:x".into(),
            device_id: "D".into(),
            access_token: "syt_secret".into(),
        };
        assert!(!format!("{user:?}").contains("syt_secret"));
    }
}

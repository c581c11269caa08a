//! Logged-in matrix-sdk clients on the local stack, for the integration tests.
#![allow(dead_code, unreachable_pub)]

use matrix_sdk::{Client, Room};
use rtc_test_support::{Homeserver, StackInfo, User};

/// A registered user, logged in with matrix-sdk as one device.
pub struct Peer {
    pub client: Client,
    pub user: User,
    /// The password (= the local part).
    pub password: String,
}

impl Peer {
    /// Registers a user named after `prefix` and logs it in as `device`.
    pub async fn new(stack: &StackInfo, hs: &Homeserver, prefix: &str, device: &str) -> Self {
        let registered = hs.register_unique(prefix).await.unwrap();
        let localpart =
            registered.user_id.trim_start_matches('@').split(':').next().unwrap().to_owned();
        let client = Client::builder().homeserver_url(&stack.homeserver_url).build().await.unwrap();
        client
            .matrix_auth()
            .login_username(&localpart, &localpart)
            .device_id(device)
            .send()
            .await
            .unwrap();
        let user = User {
            user_id: registered.user_id,
            device_id: device.to_owned(),
            access_token: client.access_token().unwrap(),
        };
        Self { client, user, password: localpart }
    }

    /// A room it has joined.
    pub fn room(&self, room_id: &str) -> Room {
        let room_id: matrix_sdk::ruma::OwnedRoomId = room_id.parse().unwrap();
        self.client.get_room(&room_id).expect("joined room is known")
    }

    /// Its LiveKit identity with a state membership: `user:device`.
    pub fn identity(&self) -> String {
        format!("{}:{}", self.user.user_id, self.user.device_id)
    }
}

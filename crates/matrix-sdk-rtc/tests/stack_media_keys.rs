//! Media keys between real matrix-sdk clients in an encrypted room on the local stack: members
//! exchange their keys Olm-encrypted, a joiner gets the current ones, a leave rotates them, and
//! keys that are unencrypted, from a device without a membership, for another room or malformed
//! are ignored. Needs `cargo xtask devstack up` (or `cargo xtask test`).
#![recursion_limit = "256"]

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use common::Peer;
use matrix_sdk::config::SyncSettings;
use matrix_sdk::ruma::api::client::to_device::send_event_to_device;
use matrix_sdk::ruma::events::AnyToDeviceEventContent;
use matrix_sdk::ruma::serde::Raw;
use matrix_sdk::ruma::to_device::DeviceIdOrAllDevices;
use matrix_sdk::ruma::{OwnedUserId, TransactionId};
use matrix_sdk_base::crypto::CollectStrategy;
use matrix_sdk_rtc::media_keys::{
    EVENT_TYPE, MediaKey, MediaKeyExchange, MediaKeySink, OwnMember, USE_KEY_DELAY,
};
use matrix_sdk_rtc::{MembershipTimings, OwnMembership, RoomCallObserver};
use rtc_test_support::{Homeserver, StackInfo};
use serde_json::{Value, json};
use tokio::sync::watch;

const WAIT: Duration = Duration::from_secs(30);

/// (LiveKit identity, index, key) as the exchange set them.
type Recorded = Vec<(String, u8, [u8; 16])>;

/// A sink that records every key.
struct Recorder(watch::Sender<Recorded>);

impl MediaKeySink for Recorder {
    fn set_key(&self, identity: &str, index: u8, key: &MediaKey) {
        self.0.send_modify(|keys| keys.push((identity.to_owned(), index, *key.expose())));
    }
}

impl Recorder {
    /// Waits until a key for `identity` at `index` is set; the key.
    async fn wait_key(&self, identity: &str, index: u8) -> [u8; 16] {
        let mut keys = self.0.subscribe();
        let found = tokio::time::timeout(
            WAIT,
            keys.wait_for(|k| k.iter().any(|(i, x, _)| i == identity && *x == index)),
        )
        .await
        .unwrap_or_else(|_| panic!("no key {index} for {identity} within {WAIT:?}"))
        .unwrap();
        found.iter().rev().find(|(i, x, _)| i == identity && *x == index).unwrap().2
    }

    fn has(&self, identity: &str, index: u8) -> bool {
        self.0.borrow().iter().any(|(i, x, _)| i == identity && *x == index)
    }
}

/// A member of the call with its key exchange running.
struct InCall {
    keys: Arc<Recorder>,
    _exchange: MediaKeyExchange,
    _observer: RoomCallObserver,
    membership: OwnMembership,
}

async fn enter_call(peer: &Peer, room_id: &str, stack: &StackInfo) -> InCall {
    let room = peer.room(room_id);
    let observer = RoomCallObserver::new(&room).await.unwrap();
    let membership =
        OwnMembership::join(&room, &stack.auth_service_url, MembershipTimings::default())
            .await
            .unwrap();
    let own = OwnMember {
        user_id: peer.user.user_id.clone(),
        device_id: peer.user.device_id.clone(),
        member_id: membership.member_id().unwrap_or_default().to_owned(),
        livekit_identity: peer.identity(),
    };
    let keys = Arc::new(Recorder(watch::channel(Vec::new()).0));
    let exchange = MediaKeyExchange::start(&room, own, observer.subscribe(), keys.clone());
    InCall { keys, _exchange: exchange, _observer: observer, membership }
}

/// A key message as Element Call sends it, from `device`, for `room_id`.
fn message(room_id: &str, device: &str, index: u64, key: &str) -> Value {
    json!({
        "keys": {"index": index, "key": key},
        "member": {"id": "m", "claimed_device_id": device},
        "room_id": room_id,
        "session": {"application": "m.call", "call_id": "", "scope": "m.room"},
        "sent_ts": 0,
    })
}

/// Sends `content` from `from` to `to`'s device, Olm-encrypted or in clear.
async fn send_key_message(from: &Peer, to: &Peer, content: &Value, encrypted: bool) {
    let raw = Raw::<AnyToDeviceEventContent>::from_json_string(content.to_string()).unwrap();
    let user: OwnedUserId = to.user.user_id.parse().unwrap();
    if encrypted {
        let encryption = from.client.encryption();
        let device = encryption
            .get_device(&user, to.user.device_id.as_str().into())
            .await
            .unwrap()
            .expect("the recipient's device keys are known");
        let failed = encryption
            .encrypt_and_send_raw_to_device(
                vec![&device],
                EVENT_TYPE,
                raw,
                CollectStrategy::AllDevices,
            )
            .await
            .unwrap();
        assert!(failed.is_empty(), "not sent to {failed:?}");
    } else {
        let messages = BTreeMap::from([(
            user,
            BTreeMap::from([(
                DeviceIdOrAllDevices::DeviceId(to.user.device_id.as_str().into()),
                raw,
            )]),
        )]);
        let request = send_event_to_device::v3::Request::new_raw(
            EVENT_TYPE.into(),
            TransactionId::new(),
            messages,
        );
        from.client.send(request).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_exchange_keys_and_rotate_them_when_one_leaves() {
    let stack = StackInfo::require();
    let hs = Homeserver::new(&stack);
    let alice = Peer::new(&stack, &hs, "alice", "ALICEDEV").await;
    let bob = Peer::new(&stack, &hs, "bob", "BOBDEV").await;
    let carol = Peer::new(&stack, &hs, "carol", "CAROLDEV").await;
    let mallory = Peer::new(&stack, &hs, "mallory", "MALDEV").await;
    let room_id = hs
        .create_encrypted_call_room(&alice.user, &[&bob.user, &carol.user, &mallory.user])
        .await
        .unwrap();
    for p in [&bob, &carol, &mallory] {
        hs.join(&p.user, &room_id).await.unwrap();
    }
    for p in [&alice, &bob, &carol, &mallory] {
        p.client.sync_once(SyncSettings::default()).await.unwrap();
        let client = p.client.clone();
        tokio::spawn(async move { client.sync(SyncSettings::default()).await });
    }

    // Alice and Bob: each encrypts with its own key 0 and has the other's.
    let a = enter_call(&alice, &room_id, &stack).await;
    let b = enter_call(&bob, &room_id, &stack).await;
    let alice_key = a.keys.wait_key(&alice.identity(), 0).await;
    let bob_key = b.keys.wait_key(&bob.identity(), 0).await;
    assert_ne!(alice_key, bob_key);
    assert_eq!(b.keys.wait_key(&alice.identity(), 0).await, alice_key);
    assert_eq!(a.keys.wait_key(&bob.identity(), 0).await, bob_key);

    // Carol joins within the grace period: she gets the current keys, nobody rotates.
    let c = enter_call(&carol, &room_id, &stack).await;
    assert_eq!(c.keys.wait_key(&alice.identity(), 0).await, alice_key);
    assert_eq!(c.keys.wait_key(&bob.identity(), 0).await, bob_key);
    let carol_key = a.keys.wait_key(&carol.identity(), 0).await;
    assert_eq!(b.keys.wait_key(&carol.identity(), 0).await, carol_key);
    assert!(!a.keys.has(&alice.identity(), 1));

    // Carol leaves: Alice and Bob rotate, send the new keys and use them a second later.
    c.membership.leave().await.unwrap();
    let alice_new = b.keys.wait_key(&alice.identity(), 1).await;
    assert_ne!(alice_new, alice_key);
    assert_eq!(a.keys.wait_key(&alice.identity(), 1).await, alice_new, "alice uses it");
    assert_eq!(
        a.keys.wait_key(&bob.identity(), 1).await,
        b.keys.wait_key(&bob.identity(), 1).await
    );
    assert!(!c.keys.has(&alice.identity(), 1), "the leaver does not get the new key");
    assert!(USE_KEY_DELAY >= Duration::from_secs(1));

    // What must be ignored, then one good message: it arrives, so the others did too.
    let bad = [
        // From Bob, a member, but in clear.
        (&bob, message(&room_id, "BOBDEV", 9, "BwcHBwcHBwcHBwcHBwcHBw=="), false),
        // Encrypted, from Mallory: in the room, not in the call.
        (&mallory, message(&room_id, "MALDEV", 9, "BwcHBwcHBwcHBwcHBwcHBw=="), true),
        // From Bob for another room.
        (&bob, message("!other:localhost", "BOBDEV", 8, "BwcHBwcHBwcHBwcHBwcHBw=="), true),
        // From Bob, a 4-byte key.
        (&bob, message(&room_id, "BOBDEV", 7, "BwcHBw=="), true),
        // From Bob, claiming Carol's device.
        (&bob, message(&room_id, "CAROLDEV", 6, "BwcHBwcHBwcHBwcHBwcHBw=="), true),
    ];
    for (from, content, encrypted) in &bad {
        send_key_message(from, &alice, content, *encrypted).await;
    }
    send_key_message(
        &bob,
        &alice,
        &message(&room_id, "BOBDEV", 5, "BwcHBwcHBwcHBwcHBwcHBw=="),
        true,
    )
    .await;
    // The good key was sent after the bad ones: the homeserver delivers to-device messages in
    // the order it received them, and the exchange handles them in that order, so once the good
    // one is set every bad one has been handled (and must have been refused).
    assert_eq!(a.keys.wait_key(&bob.identity(), 5).await, [7; 16], "the good one arrives");
    for index in [6, 7, 8, 9] {
        assert!(!a.keys.has(&bob.identity(), index), "bob's bad key {index} was taken");
    }
    assert!(!a.keys.has(&mallory.identity(), 9), "a non-member's key was taken");
    assert!(!a.keys.has(&carol.identity(), 6), "a key claiming another device was taken");
    assert_eq!(
        a.keys.wait_key(&bob.identity(), 1).await,
        b.keys.wait_key(&bob.identity(), 1).await
    );

    a.membership.leave().await.unwrap();
    b.membership.leave().await.unwrap();
}

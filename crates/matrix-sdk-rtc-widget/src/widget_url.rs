//! Element Call's widget URL for a room: matrix-sdk's virtual Element Call widget, with the
//! parameters Element Call reads.

use matrix_sdk::Room;
use matrix_sdk::widget::{
    ClientProperties, EncryptionSystem, Intent, VirtualElementCallWidgetConfig,
    VirtualElementCallWidgetProperties, WidgetSettings,
};
use url::Url;

use crate::HostError;

/// Who the host says it is to Element Call (`clientId`).
const CLIENT_ID: &str = "io.github.matrix-rtc-rs.widget-host";

/// What Element Call's URL is made from.
#[derive(Debug, Clone)]
pub(crate) struct WidgetUrlParts {
    /// Element Call's page (see `HostOptions::element_call_page`).
    pub(crate) element_call: Url,
    pub(crate) widget_id: String,
    /// The host page's origin (`parentUrl`).
    pub(crate) parent: Url,
    pub(crate) skip_lobby: bool,
}

/// The URL the iframe loads for `room`, as things are now: the intent is to join the room's
/// call if there is one (start one otherwise), media are encrypted per participant in an
/// encrypted room; user, device, room, homeserver and display name are the client's.
pub(crate) async fn element_call_url(
    room: &Room,
    parts: &WidgetUrlParts,
) -> Result<Url, HostError> {
    let encrypted = room.encryption_state().is_encrypted();
    let props = VirtualElementCallWidgetProperties {
        element_call_url: parts.element_call.to_string(),
        widget_id: parts.widget_id.clone(),
        parent_url: Some(parts.parent.origin().ascii_serialization() + "/"),
        encryption: if encrypted {
            EncryptionSystem::PerParticipantKeys
        } else {
            EncryptionSystem::Unencrypted
        },
        ..Default::default()
    };
    let config = VirtualElementCallWidgetConfig {
        intent: Some(if room.has_active_room_call() {
            Intent::JoinExisting
        } else {
            Intent::StartCall
        }),
        skip_lobby: Some(parts.skip_lobby),
        ..Default::default()
    };
    let settings = WidgetSettings::new_virtual_element_call_widget(props, config)
        .map_err(|e| HostError::WidgetUrl(e.to_string()))?;
    settings
        .generate_webview_url(room, ClientProperties::new(CLIENT_ID, None, None))
        .await
        .map_err(|e| HostError::WidgetUrl(e.to_string()))
}

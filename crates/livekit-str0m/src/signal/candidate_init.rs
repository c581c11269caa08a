//! The `candidateInit` JSON of `TrickleRequest`: a browser `RTCIceCandidateInit`.

use serde::{Deserialize, Serialize};
use str0m::Candidate;

/// What a trickled candidate carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct CandidateInit {
    /// `candidate:… typ …`; empty for end-of-candidates.
    pub(crate) candidate: String,
    /// The m-line's mid (`null` from some peers).
    #[serde(rename = "sdpMid", default)]
    pub(crate) sdp_mid: Option<String>,
    /// The m-line's index.
    #[serde(rename = "sdpMLineIndex", default)]
    pub(crate) sdp_m_line_index: Option<u32>,
    /// The ICE username fragment the candidate belongs to.
    #[serde(rename = "usernameFragment", default, skip_serializing_if = "Option::is_none")]
    pub(crate) username_fragment: Option<String>,
}

/// Why a trickled candidate was not used.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CandidateInitError {
    #[error("candidateInit is not the expected JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("candidate is not valid: {0}")]
    Candidate(String),
}

/// Parses a remote candidate; `Ok(None)` is end-of-candidates.
pub(crate) fn parse_candidate_init(json: &str) -> Result<Option<Candidate>, CandidateInitError> {
    let init: CandidateInit = serde_json::from_str(json)?;
    let line = init.candidate.trim();
    let line = line.strip_prefix("a=").unwrap_or(line);
    if line.is_empty() {
        return Ok(None);
    }
    Candidate::from_sdp_string(line)
        .map(Some)
        .map_err(|e| CandidateInitError::Candidate(e.to_string()))
}

/// Formats a local candidate the way both official clients can read it (string `sdpMid`,
/// integer `sdpMLineIndex`; the Rust SDK panics on `null`).
pub(crate) fn candidate_init_json(candidate: &Candidate, mid: &str) -> String {
    let init = CandidateInit {
        candidate: candidate.to_sdp_string(),
        sdp_mid: Some(mid.to_owned()),
        sdp_m_line_index: Some(0),
        username_fragment: None,
    };
    serde_json::to_string(&init).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_livekit_server_candidate() {
        let json = r#"{"candidate":"candidate:1589475735 1 udp 2130706431 127.0.0.1 7882 typ host","sdpMid":"0","sdpMLineIndex":0,"usernameFragment":"abc"}"#;
        let candidate = parse_candidate_init(json).unwrap().unwrap();
        assert_eq!(candidate.addr(), "127.0.0.1:7882".parse().unwrap());
    }

    #[test]
    fn null_mid_and_empty_candidate_are_fine() {
        let json = r#"{"candidate":"","sdpMid":null}"#;
        assert!(parse_candidate_init(json).unwrap().is_none());
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for bad in ["", "{", "[]", r#"{"candidate":5}"#, r#"{"candidate":"candidate:x"}"#] {
            assert!(parse_candidate_init(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn writes_string_mid_and_integer_index() {
        let candidate = Candidate::host("127.0.0.1:5000".parse().unwrap(), "udp").unwrap();
        let json: serde_json::Value =
            serde_json::from_str(&candidate_init_json(&candidate, "0")).unwrap();
        assert_eq!(json["sdpMid"], "0");
        assert_eq!(json["sdpMLineIndex"], 0);
        assert!(json["candidate"].as_str().unwrap().starts_with("candidate:"));
        let back = parse_candidate_init(&json.to_string()).unwrap().unwrap();
        assert_eq!(back.addr(), candidate.addr());
    }
}

//! Why a signaling request to the SFU failed.

use thiserror::Error;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SfuError {
    /// The SDP could not be parsed or applied (wire: `bad_request`).
    #[error("{0}")]
    BadSdp(String),
    /// The offer has audio/video but no codec the SFU forwards (wire: `media_unsupported`).
    #[error("{0}")]
    MediaUnsupported(String),
    /// An `sfu_answer` that matches no outstanding server offer (wire: `bad_request`).
    #[error("{0}")]
    NoPendingOffer(String),
    /// A track or layer this participant does not receive (wire: `bad_request`).
    #[error("{0}")]
    UnknownTrack(String),
    /// The room has its most media participants (wire: `room_full`).
    #[error("the room has its limit of {0} media participants")]
    RoomFull(usize),
    /// The SFU is not running (wire: `unavailable`).
    #[error("the SFU is not running on this server")]
    Unavailable,
}

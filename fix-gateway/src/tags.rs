//! FIX 4.4 tag numbers and message types used by the gateway (names as in the FIX 4.4 data
//! dictionary).

pub const BEGIN_STRING: u32 = 8;
pub const BODY_LENGTH: u32 = 9;
pub const CHECK_SUM: u32 = 10;
pub const BEGIN_SEQ_NO: u32 = 7;
pub const END_SEQ_NO: u32 = 16;
pub const MSG_SEQ_NUM: u32 = 34;
pub const MSG_TYPE: u32 = 35;
pub const NEW_SEQ_NO: u32 = 36;
pub const POSS_DUP_FLAG: u32 = 43;
pub const REF_SEQ_NUM: u32 = 45;
pub const SENDER_COMP_ID: u32 = 49;
pub const SENDING_TIME: u32 = 52;
pub const TARGET_COMP_ID: u32 = 56;
pub const TEXT: u32 = 58;
pub const POSS_RESEND: u32 = 97;
pub const ENCRYPT_METHOD: u32 = 98;
pub const HEART_BT_INT: u32 = 108;
pub const TEST_REQ_ID: u32 = 112;
pub const ORIG_SENDING_TIME: u32 = 122;
pub const GAP_FILL_FLAG: u32 = 123;
pub const RESET_SEQ_NUM_FLAG: u32 = 141;
pub const REF_TAG_ID: u32 = 371;
pub const REF_MSG_TYPE: u32 = 372;
pub const SESSION_REJECT_REASON: u32 = 373;
pub const BUSINESS_REJECT_REASON: u32 = 380;
pub const USERNAME: u32 = 553;
pub const PASSWORD: u32 = 554;

/// Session-level (admin) message types.
pub mod msg_type {
    pub const HEARTBEAT: &[u8] = b"0";
    pub const TEST_REQUEST: &[u8] = b"1";
    pub const RESEND_REQUEST: &[u8] = b"2";
    pub const REJECT: &[u8] = b"3";
    pub const SEQUENCE_RESET: &[u8] = b"4";
    pub const LOGOUT: &[u8] = b"5";
    pub const LOGON: &[u8] = b"A";
    pub const BUSINESS_MESSAGE_REJECT: &[u8] = b"j";
}

/// Whether a MsgType is a session-level (admin) message.
pub fn is_admin(msg_type: &[u8]) -> bool {
    matches!(msg_type, b"0" | b"1" | b"2" | b"3" | b"4" | b"5" | b"A")
}

/// Standard header fields of FIX 4.4 that the session layer writes or reads.
pub fn is_header(tag: u32) -> bool {
    matches!(
        tag,
        8 | 9
            | 35
            | 49
            | 56
            | 115
            | 128
            | 90
            | 91
            | 34
            | 50
            | 142
            | 57
            | 143
            | 116
            | 144
            | 129
            | 145
            | 43
            | 97
            | 52
            | 122
            | 212
            | 213
            | 347
            | 369
            | 627
            | 628
            | 629
            | 630
    )
}

/// Header or trailer (SignatureLength, Signature, CheckSum).
pub fn is_header_or_trailer(tag: u32) -> bool {
    is_header(tag) || matches!(tag, 93 | 89 | 10)
}

/// FIX 4.4 length fields and the data field each announces: the data value may contain SOH,
/// so its length is taken from the length field, never from the next delimiter.
const DATA_FIELDS: &[(u32, u32)] = &[
    (90, 91),   // SecureDataLen -> SecureData
    (93, 89),   // SignatureLength -> Signature
    (95, 96),   // RawDataLength -> RawData
    (212, 213), // XmlDataLen -> XmlData
    (348, 349), // EncodedIssuerLen
    (350, 351), // EncodedSecurityDescLen
    (352, 353), // EncodedListExecInstLen
    (354, 355), // EncodedTextLen
    (356, 357), // EncodedSubjectLen
    (358, 359), // EncodedHeadlineLen
    (360, 361), // EncodedAllocTextLen
    (362, 363), // EncodedUnderlyingIssuerLen
    (364, 365), // EncodedUnderlyingSecurityDescLen
    (445, 446), // EncodedListStatusTextLen
    (618, 619), // EncodedLegIssuerLen
    (621, 622), // EncodedLegSecurityDescLen
];

/// The data field announced by a length field, if `tag` is one.
pub fn data_field_for_length(tag: u32) -> Option<u32> {
    DATA_FIELDS.iter().find(|(l, _)| *l == tag).map(|(_, d)| *d)
}

/// Whether `tag` is a data field (value length given by its length field).
pub fn is_data_field(tag: u32) -> bool {
    DATA_FIELDS.iter().any(|(_, d)| *d == tag)
}

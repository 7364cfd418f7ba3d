//! Why a key could not be read, a token not be made, or a token was refused.

use crate::Operation;

/// Every failure of this crate. [`TokenError::kind`] says what a server should answer.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The signing key is not an RSA private key in PEM (PKCS#1 or PKCS#8).
    #[error("reading the RSA private key: {0}")]
    ReadingPrivateKey(#[source] jsonwebtoken::errors::Error),
    /// The signing key PEM holds no private key (or more than one PEM block).
    #[error("the signing key PEM must hold one private key, not {0}")]
    NotAPrivateKey(String),
    /// A key of the public key bundle is not an RSA public key.
    #[error("reading public key {index} of the bundle: {source}")]
    ReadingPublicKey {
        /// Position of the key in the bundle, from 0.
        index: usize,
        /// What the parser said.
        #[source]
        source: jsonwebtoken::errors::Error,
    },
    /// The public key bundle holds a PEM block that is not a public key.
    #[error("the public key bundle holds a {0:?} PEM block; only public keys belong there")]
    NotAPublicKey(String),
    /// The public key bundle holds no PEM block at all.
    #[error("the public key bundle holds no PEM public key")]
    NoPublicKey,
    /// Signing failed.
    #[error("signing the token: {0}")]
    Signing(#[source] jsonwebtoken::errors::Error),

    /// Not a JWS, or its header or claims are not what a token holds.
    #[error("the token is malformed: {0}")]
    Malformed(#[source] jsonwebtoken::errors::Error),
    /// Signed (or claiming to be signed) with another algorithm than PS256.
    #[error("the token is signed with {0}, not PS256")]
    WrongAlgorithm(String),
    /// No trusted key verifies the signature.
    #[error("the token's signature does not verify with any trusted key")]
    BadSignature,
    /// Issued by someone else.
    #[error("the token was issued by {found:?}, not {expected:?}")]
    WrongIssuer {
        /// `iss` of the token.
        found: String,
        /// The issuer the validator trusts.
        expected: String,
    },
    /// Past its `exp` (plus the leeway).
    #[error("the token expired at {expired_at} (seconds since the epoch)")]
    Expired {
        /// `exp` of the token.
        expired_at: i64,
    },
    /// Before its `nbf` or `iat` (minus the leeway).
    #[error("the token is not valid before {not_before} (seconds since the epoch)")]
    NotYetValid {
        /// `nbf` (or `iat`) of the token.
        not_before: i64,
    },

    /// A valid token for another operation.
    #[error("the token is for operation {found:?}, not {expected}")]
    WrongOperation {
        /// `operation` of the token.
        found: String,
        /// The operation asked for.
        expected: Operation,
    },
    /// A valid token for another kind of object.
    #[error("the token is for resource {found:?}, not {expected}")]
    WrongResource {
        /// `resource.resource` of the token.
        found: String,
        /// The resource asked for (`persistentvolumeclaims`, or `volumesnapshots` for a clone
        /// from a snapshot).
        expected: String,
    },
    /// A valid token that names no claim.
    #[error("the token names no claim")]
    MissingName,
    /// A valid token that names no namespace.
    #[error("the token names no namespace")]
    MissingNamespace,

    /// No token where one is required (a DataVolume's clone token annotation is unset).
    #[error(
        "there is no clone token: cdi-apiserver's DataVolume webhook adds one when the \
         DataVolume is created by a user allowed to clone the source; recreate the DataVolume \
         with the webhook in place"
    )]
    MissingToken,
    /// A valid clone token for another source.
    #[error("the clone token is for source {found}, not {expected}")]
    WrongCloneSource {
        /// `namespace/name` the token names.
        found: String,
        /// `namespace/name` of the source being cloned.
        expected: String,
    },
    /// A valid clone token for another target.
    #[error("the clone token is for target {found}, not {expected}")]
    WrongCloneTarget {
        /// `namespace/name` of the token's `params` (empty parts when absent).
        found: String,
        /// `namespace/name` of the DataVolume being filled.
        expected: String,
    },
}

/// What kind of failure a [`TokenError`] is, and so what a server answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// A key could not be read or used: a configuration problem (500; fatal at start-up).
    Key,
    /// The token cannot be trusted: malformed, badly signed, expired or not yet valid (401).
    Unauthenticated,
    /// A trusted token that does not allow this request: wrong operation or resource, or no
    /// claim named (400).
    WrongPurpose,
}

impl ErrorKind {
    /// The HTTP status CDI answers with.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorKind::Key => 500,
            ErrorKind::Unauthenticated => 401,
            ErrorKind::WrongPurpose => 400,
        }
    }
}

impl TokenError {
    /// The kind of this failure.
    pub fn kind(&self) -> ErrorKind {
        match self {
            TokenError::ReadingPrivateKey(_)
            | TokenError::NotAPrivateKey(_)
            | TokenError::ReadingPublicKey { .. }
            | TokenError::NotAPublicKey(_)
            | TokenError::NoPublicKey
            | TokenError::Signing(_) => ErrorKind::Key,
            TokenError::Malformed(_)
            | TokenError::WrongAlgorithm(_)
            | TokenError::BadSignature
            | TokenError::WrongIssuer { .. }
            | TokenError::MissingToken
            | TokenError::Expired { .. }
            | TokenError::NotYetValid { .. } => ErrorKind::Unauthenticated,
            TokenError::WrongOperation { .. }
            | TokenError::WrongResource { .. }
            | TokenError::MissingName
            | TokenError::MissingNamespace
            | TokenError::WrongCloneSource { .. }
            | TokenError::WrongCloneTarget { .. } => ErrorKind::WrongPurpose,
        }
    }
}

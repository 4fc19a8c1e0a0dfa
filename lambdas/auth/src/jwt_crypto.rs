//! jsonwebtoken's signature primitives on `ring`, for the three algorithms this project
//! accepts (HS256, RS256, ES256).
//!
//! jsonwebtoken keeps the JWT logic (parsing, `alg` checks, `exp`/`nbf`/`iss`/`aud`) and
//! asks a [`CryptoProvider`] only to sign and verify bytes. Its stock backends are RustCrypto
//! (rsa, p256, p384, ed25519-dalek, hmac, sha2) or aws-lc-rs; ring is already linked for
//! rustls, so supplying the primitives from it keeps one crypto stack in the Lambda binary.
//!
//! Every other algorithm (HS384/512, RS384/512, PS*, ES384, EdDSA) is refused with
//! [`ErrorKind::InvalidAlgorithm`]; the verifiers only ever allow one of the three anyway.
//! RSA keys must be 2048 to 8192 bits (ring's range, and what identity providers publish).

use std::sync::OnceLock;

use jsonwebtoken::crypto::{CryptoProvider, JwtSigner, JwtVerifier, KeyUtils};
use jsonwebtoken::errors::{new_error, ErrorKind, Result};
use jsonwebtoken::jwk::{EllipticCurve, ThumbprintHash};
use jsonwebtoken::signature::{self, Signer, Verifier};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, DecodingKeyKind, EncodingKey};
use ring::rand::SystemRandom;
use ring::signature::{
    EcdsaKeyPair, KeyPair, RsaKeyPair, RsaPublicKeyComponents, UnparsedPublicKey,
    ECDSA_P256_SHA256_FIXED, ECDSA_P256_SHA256_FIXED_SIGNING, RSA_PKCS1_2048_8192_SHA256,
    RSA_PKCS1_SHA256,
};
use ring::{digest, hmac};

/// The ring-backed provider; [`install`] makes it the process default.
///
/// `KeyUtils` (used only to build JWKs from keys, which tests do) supports RSA public
/// components from a PKCS#1 private key, P-256 public components from a PKCS#8 private key,
/// and SHA-256/384/512 thumbprints. It refuses RSA components from a DER public key and
/// Ed25519 keys, which ring does not parse cheaply and the project never needs.
pub static PROVIDER: CryptoProvider = CryptoProvider {
    signer_factory: new_signer,
    verifier_factory: new_verifier,
    key_utils: KeyUtils {
        rsa_pub_components_from_private_key: rsa_components_from_private_key,
        rsa_pub_components_from_public_key: rsa_components_from_public_key,
        ec_pub_components_from_private_key: ec_components_from_private_key,
        ed_pub_components_from_private_key: ed_components_from_private_key,
        compute_digest,
    },
};

/// Makes [`PROVIDER`] jsonwebtoken's process default; true if it is the default afterwards.
///
/// Safe to call any number of times from any thread. Without a crypto feature jsonwebtoken
/// panics on first use when no provider is installed, so every entry point of this crate
/// calls this first. If another provider got there first (only possible when some crate
/// enables a jsonwebtoken crypto feature, e.g. in tests), that one stays and we log it once.
pub fn install() -> bool {
    static INSTALLED: OnceLock<bool> = OnceLock::new();
    *INSTALLED.get_or_init(|| match PROVIDER.install_default() {
        Ok(()) => true,
        Err(current) if std::ptr::eq(current, &PROVIDER) => true,
        Err(_) => {
            tracing::warn!("another jsonwebtoken CryptoProvider is installed; keeping it");
            false
        }
    })
}

fn new_signer(algorithm: &Algorithm, key: &EncodingKey) -> Result<Box<dyn JwtSigner>> {
    Ok(match algorithm {
        Algorithm::HS256 => Box::new(Hs256::signer(key)?),
        Algorithm::RS256 => Box::new(Rs256Signer::new(key)?),
        Algorithm::ES256 => Box::new(Es256Signer::new(key)?),
        _ => return Err(new_error(ErrorKind::InvalidAlgorithm)),
    })
}

fn new_verifier(algorithm: &Algorithm, key: &DecodingKey) -> Result<Box<dyn JwtVerifier>> {
    Ok(match algorithm {
        Algorithm::HS256 => Box::new(Hs256::verifier(key)?),
        Algorithm::RS256 => Box::new(Rs256Verifier::new(key)?),
        Algorithm::ES256 => Box::new(Es256Verifier::new(key)?),
        _ => return Err(new_error(ErrorKind::InvalidAlgorithm)),
    })
}

/// Refuses a key of another family, so that e.g. an RSA public key is never used as an
/// HMAC secret whatever the token's header claims.
fn require_family(actual: AlgorithmFamily, expected: AlgorithmFamily) -> Result<()> {
    if actual == expected {
        Ok(())
    } else {
        Err(new_error(ErrorKind::InvalidKeyFormat))
    }
}

/// HMAC-SHA256, signing and verifying with the same key.
struct Hs256(hmac::Key);

impl Hs256 {
    fn signer(key: &EncodingKey) -> Result<Self> {
        require_family(key.family(), AlgorithmFamily::Hmac)?;
        Ok(Self(hmac::Key::new(hmac::HMAC_SHA256, key.as_bytes())))
    }

    fn verifier(key: &DecodingKey) -> Result<Self> {
        require_family(key.family(), AlgorithmFamily::Hmac)?;
        Ok(Self(hmac::Key::new(
            hmac::HMAC_SHA256,
            key.try_get_as_bytes()?,
        )))
    }
}

impl Signer<Vec<u8>> for Hs256 {
    fn try_sign(&self, msg: &[u8]) -> std::result::Result<Vec<u8>, signature::Error> {
        Ok(hmac::sign(&self.0, msg).as_ref().to_vec())
    }
}

impl Verifier<Vec<u8>> for Hs256 {
    fn verify(&self, msg: &[u8], signature: &Vec<u8>) -> std::result::Result<(), signature::Error> {
        // ring compares in constant time.
        hmac::verify(&self.0, msg, signature).map_err(|_| signature::Error::new())
    }
}

impl JwtSigner for Hs256 {
    fn algorithm(&self) -> Algorithm {
        Algorithm::HS256
    }
}

impl JwtVerifier for Hs256 {
    fn algorithm(&self) -> Algorithm {
        Algorithm::HS256
    }
}

/// RSASSA-PKCS1-v1_5 with SHA-256, from a PKCS#1 DER private key.
struct Rs256Signer {
    key_pair: RsaKeyPair,
    rng: SystemRandom,
}

impl Rs256Signer {
    fn new(key: &EncodingKey) -> Result<Self> {
        require_family(key.family(), AlgorithmFamily::Rsa)?;
        let key_pair = RsaKeyPair::from_der(key.as_bytes())
            .map_err(|e| new_error(ErrorKind::InvalidRsaKey(e.to_string())))?;
        Ok(Self {
            key_pair,
            rng: SystemRandom::new(),
        })
    }
}

impl Signer<Vec<u8>> for Rs256Signer {
    fn try_sign(&self, msg: &[u8]) -> std::result::Result<Vec<u8>, signature::Error> {
        let mut signature = vec![0; self.key_pair.public().modulus_len()];
        self.key_pair
            .sign(&RSA_PKCS1_SHA256, &self.rng, msg, &mut signature)
            .map_err(|_| signature::Error::new())?;
        Ok(signature)
    }
}

impl JwtSigner for Rs256Signer {
    fn algorithm(&self) -> Algorithm {
        Algorithm::RS256
    }
}

/// RS256 verification: JWKs give `n` and `e`; `DecodingKey::from_rsa_der` gives a PKCS#1
/// `RSAPublicKey`, which ring reads as is.
enum Rs256Verifier {
    Components { n: Vec<u8>, e: Vec<u8> },
    Der(Vec<u8>),
}

impl Rs256Verifier {
    fn new(key: &DecodingKey) -> Result<Self> {
        require_family(key.family(), AlgorithmFamily::Rsa)?;
        Ok(match key.kind() {
            DecodingKeyKind::RsaModulusExponent { n, e } => Self::Components {
                n: n.clone(),
                e: e.clone(),
            },
            DecodingKeyKind::SecretOrDer(der) => Self::Der(der.clone()),
        })
    }
}

impl Verifier<Vec<u8>> for Rs256Verifier {
    fn verify(&self, msg: &[u8], signature: &Vec<u8>) -> std::result::Result<(), signature::Error> {
        let checked = match self {
            Self::Components { n, e } => {
                RsaPublicKeyComponents { n, e }.verify(&RSA_PKCS1_2048_8192_SHA256, msg, signature)
            }
            Self::Der(der) => {
                UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, der).verify(msg, signature)
            }
        };
        checked.map_err(|_| signature::Error::new())
    }
}

impl JwtVerifier for Rs256Verifier {
    fn algorithm(&self) -> Algorithm {
        Algorithm::RS256
    }
}

/// ECDSA P-256 with SHA-256 and the fixed-width `r || s` signatures JWS uses, from a PKCS#8
/// DER private key.
struct Es256Signer {
    key_pair: EcdsaKeyPair,
    rng: SystemRandom,
}

impl Es256Signer {
    fn new(key: &EncodingKey) -> Result<Self> {
        require_family(key.family(), AlgorithmFamily::Ec)?;
        let rng = SystemRandom::new();
        let key_pair =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, key.as_bytes(), &rng)
                .map_err(|_| new_error(ErrorKind::InvalidEcdsaKey))?;
        Ok(Self { key_pair, rng })
    }
}

impl Signer<Vec<u8>> for Es256Signer {
    fn try_sign(&self, msg: &[u8]) -> std::result::Result<Vec<u8>, signature::Error> {
        let signature = self
            .key_pair
            .sign(&self.rng, msg)
            .map_err(|_| signature::Error::new())?;
        Ok(signature.as_ref().to_vec())
    }
}

impl JwtSigner for Es256Signer {
    fn algorithm(&self) -> Algorithm {
        Algorithm::ES256
    }
}

/// ES256 verification against an uncompressed SEC1 point `0x04 || x || y`: what
/// `DecodingKey::from_jwk` (and `from_ec_der`) hold for an EC key.
struct Es256Verifier(Vec<u8>);

impl Es256Verifier {
    fn new(key: &DecodingKey) -> Result<Self> {
        require_family(key.family(), AlgorithmFamily::Ec)?;
        let point = key.try_get_as_bytes()?;
        // Refused here rather than at every verification: a P-384 key, a compressed point.
        if point.len() != 65 || point[0] != 0x04 {
            return Err(new_error(ErrorKind::InvalidEcdsaKey));
        }
        Ok(Self(point.to_vec()))
    }
}

impl Verifier<Vec<u8>> for Es256Verifier {
    fn verify(&self, msg: &[u8], signature: &Vec<u8>) -> std::result::Result<(), signature::Error> {
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &self.0)
            .verify(msg, signature)
            .map_err(|_| signature::Error::new())
    }
}

impl JwtVerifier for Es256Verifier {
    fn algorithm(&self) -> Algorithm {
        Algorithm::ES256
    }
}

fn rsa_components_from_private_key(der: &[u8]) -> Result<(Vec<u8>, Vec<u8>)> {
    let key_pair = RsaKeyPair::from_der(der)
        .map_err(|e| new_error(ErrorKind::InvalidRsaKey(e.to_string())))?;
    let components = RsaPublicKeyComponents::<Vec<u8>>::from(key_pair.public());
    Ok((components.n, components.e))
}

fn rsa_components_from_public_key(_der: &[u8]) -> Result<(Vec<u8>, Vec<u8>)> {
    // ring verifies with a DER public key but does not expose its components; only
    // `Jwk::from_decoding_key` on a DER key needs them, which the project never does.
    Err(new_error(ErrorKind::Provider(
        "the ring provider cannot read RSA components from a DER public key".into(),
    )))
}

fn ec_components_from_private_key(
    der: &[u8],
    algorithm: Algorithm,
) -> Result<(EllipticCurve, Vec<u8>, Vec<u8>)> {
    if algorithm != Algorithm::ES256 {
        return Err(new_error(ErrorKind::InvalidAlgorithm));
    }
    let key_pair =
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der, &SystemRandom::new())
            .map_err(|_| new_error(ErrorKind::InvalidEcdsaKey))?;
    // ring gives the uncompressed point: 0x04, then x and y of 32 bytes each.
    let point = key_pair.public_key().as_ref();
    match point {
        [0x04, xy @ ..] if xy.len() == 64 => {
            let (x, y) = xy.split_at(32);
            Ok((EllipticCurve::P256, x.to_vec(), y.to_vec()))
        }
        _ => Err(new_error(ErrorKind::InvalidEcdsaKey)),
    }
}

fn ed_components_from_private_key(_der: &[u8], _curve: &EllipticCurve) -> Result<Vec<u8>> {
    // EdDSA is not accepted, so its keys are not read either.
    Err(new_error(ErrorKind::InvalidAlgorithm))
}

fn compute_digest(data: &[u8], hash: ThumbprintHash) -> Result<Vec<u8>> {
    let algorithm = match hash {
        ThumbprintHash::SHA256 => &digest::SHA256,
        ThumbprintHash::SHA384 => &digest::SHA384,
        ThumbprintHash::SHA512 => &digest::SHA512,
        _ => return Err(new_error(ErrorKind::UnsupportedAlgorithm)),
    };
    Ok(digest::digest(algorithm, data).as_ref().to_vec())
}

#[cfg(test)]
mod tests {
    //! The provider is called directly (not through the process default), so these tests
    //! exercise ring whatever other jsonwebtoken features the test build enables.

    use super::*;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;

    const RSA_DER: &[u8] = include_bytes!("../tests/keys/rsa.der");
    const RSA_OTHER_DER: &[u8] = include_bytes!("../tests/keys/rsa-other.der");
    const RSA_PUBLIC_DER: &[u8] = include_bytes!("../tests/keys/rsa-public.der");
    const EC_DER: &[u8] = include_bytes!("../tests/keys/ec.der");

    /// RFC 7515 appendix A.1: the HS256 example's key, signing input and signature.
    const RFC7515_KEY: &str =
        "AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow";
    const RFC7515_INPUT: &str = "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9.eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ";
    const RFC7515_SIGNATURE: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";

    /// `RS256_INPUT` signed with `tests/keys/rsa.der` by
    /// `openssl dgst -sha256 -keyform DER -sign rsa.der` (PKCS#1 v1.5 is deterministic).
    const RS256_INPUT: &str = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJrYXQifQ";
    const RS256_OPENSSL_SIGNATURE: &str = "IbsBexbpRY6smrWY_P5y1DjR0EnIPStgvHEaYvnwKXJ-KYho6u5OKpyo4lhw2rAguzUe5KFYsrE-uv8X3L_iaJfoJqsYijr-BxyjpIj_muyW-ypxfeQDA5Kqz2yneBE0AbegNWiIT-gR8wPGOUBjyv_KAWdT97AwlK9nGH7o7NO7fiETrcjEt6LkBVhI0Hxj9iTaTPzHyTryR8XA-L-7Wv8_kwr9vKv4uqMRZHPKuasYRtZJOL93PHnUGwytAIWSf08k1YR7NqHmJbrvNvhk6fHdcRGvfiA_YRcygIgxYo0KFY6xUJa8ecV9um6GSGaP2l37zWAB5Vu24dNCODxk1A";

    /// `ES256_INPUT` signed with `tests/keys/ec.der` by openssl (its DER signature's r and s,
    /// concatenated), and that key's public point from `openssl pkey -pubout`.
    const ES256_INPUT: &str = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJrYXQifQ";
    const ES256_OPENSSL_SIGNATURE_HEX: &str = "22fcf342199d3d6258b0b8b2c47f3655021a278e7528ff68530b5eb45f0df1fae76c292b2da325d5d499f74045ae0d68a7e7a2d7963df44155b587365d395df6";
    const EC_PUBLIC_POINT_HEX: &str = "04f4288c9e4b1882a3c78cda972652278b88b63f0dd69d9a12b7b4da75123854a1a9dffc366c50248273460406e7cb20b27f8ffd990ee98d1657fcc3e7e751b2e8";

    fn b64(text: &str) -> Vec<u8> {
        URL_SAFE_NO_PAD.decode(text).unwrap()
    }

    fn hex(text: &str) -> Vec<u8> {
        (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
            .collect()
    }

    fn flipped(mut signature: Vec<u8>) -> Vec<u8> {
        signature[7] ^= 0x01;
        signature
    }

    fn sign(algorithm: Algorithm, key: &EncodingKey, msg: &[u8]) -> Vec<u8> {
        (PROVIDER.signer_factory)(&algorithm, key)
            .unwrap()
            .try_sign(msg)
            .unwrap()
    }

    fn verifies(algorithm: Algorithm, key: &DecodingKey, msg: &[u8], signature: &[u8]) -> bool {
        (PROVIDER.verifier_factory)(&algorithm, key)
            .unwrap()
            .verify(msg, &signature.to_vec())
            .is_ok()
    }

    /// The signature verifies for its own message, and neither with one bit flipped nor for
    /// another message.
    fn assert_verifies_only_its_message(
        algorithm: Algorithm,
        key: &DecodingKey,
        msg: &[u8],
        signature: &[u8],
    ) {
        assert!(verifies(algorithm, key, msg, signature), "{algorithm:?}");
        assert!(
            !verifies(algorithm, key, msg, &flipped(signature.to_vec())),
            "{algorithm:?}: a flipped bit"
        );
        assert!(
            !verifies(algorithm, key, b"another message", signature),
            "{algorithm:?}: another message"
        );
    }

    fn rsa_public_jwk_key(private_der: &[u8]) -> DecodingKey {
        let (n, e) = (PROVIDER.key_utils.rsa_pub_components_from_private_key)(private_der).unwrap();
        DecodingKey::from_rsa_raw_components(&n, &e)
    }

    #[test]
    fn hs256_matches_rfc_7515() {
        let secret = b64(RFC7515_KEY);
        let input = RFC7515_INPUT.as_bytes();
        let expected = b64(RFC7515_SIGNATURE);
        let signature = sign(
            Algorithm::HS256,
            &EncodingKey::from_secret(&secret).unwrap(),
            input,
        );
        assert_eq!(signature, expected);
        let key = DecodingKey::from_secret(&secret).unwrap();
        assert_verifies_only_its_message(Algorithm::HS256, &key, input, &expected);
        assert!(
            !verifies(Algorithm::HS256, &key, input, &expected[..31]),
            "truncated"
        );
    }

    #[test]
    fn rs256_matches_openssl_with_jwk_components_and_der_public_keys() {
        let input = RS256_INPUT.as_bytes();
        let expected = b64(RS256_OPENSSL_SIGNATURE);
        let signature = sign(Algorithm::RS256, &EncodingKey::from_rsa_der(RSA_DER), input);
        assert_eq!(
            signature, expected,
            "PKCS#1 v1.5 signatures are deterministic"
        );
        for key in [
            rsa_public_jwk_key(RSA_DER),
            DecodingKey::from_rsa_der(RSA_PUBLIC_DER),
        ] {
            assert_verifies_only_its_message(Algorithm::RS256, &key, input, &expected);
        }
        let other = rsa_public_jwk_key(RSA_OTHER_DER);
        assert!(
            !verifies(Algorithm::RS256, &other, input, &expected),
            "another key"
        );
    }

    #[test]
    fn es256_verifies_openssl_and_round_trips_ring_signatures() {
        let key = DecodingKey::from_ec_der(&hex(EC_PUBLIC_POINT_HEX));
        let input = ES256_INPUT.as_bytes();
        let openssl = hex(ES256_OPENSSL_SIGNATURE_HEX);
        assert_verifies_only_its_message(Algorithm::ES256, &key, input, &openssl);
        // ECDSA signatures are randomized: check ring's own against the same public key.
        let signature = sign(Algorithm::ES256, &EncodingKey::from_ec_der(EC_DER), input);
        assert_eq!(signature.len(), 64, "fixed-width r || s");
        assert_verifies_only_its_message(Algorithm::ES256, &key, input, &signature);
    }

    #[test]
    fn key_utils_read_the_test_keys_as_openssl_does() {
        let (curve, x, y) =
            (PROVIDER.key_utils.ec_pub_components_from_private_key)(EC_DER, Algorithm::ES256)
                .unwrap();
        assert_eq!(curve, EllipticCurve::P256);
        assert_eq!([&[0x04][..], &x, &y].concat(), hex(EC_PUBLIC_POINT_HEX));
        let (n, e) = (PROVIDER.key_utils.rsa_pub_components_from_private_key)(RSA_DER).unwrap();
        assert_eq!((n.len(), e), (256, vec![1, 0, 1]));
        assert_eq!(
            (PROVIDER.key_utils.compute_digest)(b"abc", ThumbprintHash::SHA256).unwrap(),
            hex("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        );
        assert!((PROVIDER.key_utils.rsa_pub_components_from_public_key)(RSA_PUBLIC_DER).is_err());
        assert!(
            (PROVIDER.key_utils.ec_pub_components_from_private_key)(EC_DER, Algorithm::ES384)
                .is_err()
        );
    }

    #[test]
    fn unsupported_algorithms_are_errors_not_panics() {
        let secret = b"a-test-secret-that-is-long-enough-0123456789";
        let keys_for = |family: AlgorithmFamily| match family {
            AlgorithmFamily::Hmac => (
                EncodingKey::from_secret(secret).unwrap(),
                DecodingKey::from_secret(secret).unwrap(),
            ),
            AlgorithmFamily::Rsa => (
                EncodingKey::from_rsa_der(RSA_DER),
                DecodingKey::from_rsa_der(RSA_PUBLIC_DER),
            ),
            AlgorithmFamily::Ec => (
                EncodingKey::from_ec_der(EC_DER),
                DecodingKey::from_ec_der(&hex(EC_PUBLIC_POINT_HEX)),
            ),
            AlgorithmFamily::Ed => (
                EncodingKey::from_ed_der(&[0; 48]),
                DecodingKey::from_ed_der(&[0; 32]),
            ),
        };
        for algorithm in [
            Algorithm::HS384,
            Algorithm::HS512,
            Algorithm::RS384,
            Algorithm::RS512,
            Algorithm::PS256,
            Algorithm::PS384,
            Algorithm::PS512,
            Algorithm::ES384,
            Algorithm::EdDSA,
        ] {
            let (encoding, decoding) = keys_for(algorithm.family());
            let signer = (PROVIDER.signer_factory)(&algorithm, &encoding);
            assert!(
                matches!(
                    signer.err().map(|e| e.into_kind()),
                    Some(ErrorKind::InvalidAlgorithm)
                ),
                "{algorithm:?} signer"
            );
            let verifier = (PROVIDER.verifier_factory)(&algorithm, &decoding);
            assert!(
                matches!(
                    verifier.err().map(|e| e.into_kind()),
                    Some(ErrorKind::InvalidAlgorithm)
                ),
                "{algorithm:?} verifier"
            );
        }
    }

    #[test]
    fn a_key_of_another_family_is_refused() {
        // HS256 "signed" with an RSA public key must not even get an HMAC key built from it.
        let rsa_public = DecodingKey::from_rsa_der(RSA_PUBLIC_DER);
        assert!((PROVIDER.verifier_factory)(&Algorithm::HS256, &rsa_public).is_err());
        let secret = DecodingKey::from_secret(b"a-test-secret-that-is-long-enough-0123").unwrap();
        assert!((PROVIDER.verifier_factory)(&Algorithm::RS256, &secret).is_err());
        assert!((PROVIDER.verifier_factory)(&Algorithm::ES256, &secret).is_err());
        assert!(
            (PROVIDER.signer_factory)(&Algorithm::ES256, &EncodingKey::from_rsa_der(RSA_DER))
                .is_err()
        );
        assert!(
            (PROVIDER.signer_factory)(&Algorithm::RS256, &EncodingKey::from_rsa_der(b"junk"))
                .is_err(),
            "an unreadable key is an error"
        );
        assert!(
            (PROVIDER.verifier_factory)(&Algorithm::ES256, &DecodingKey::from_ec_der(&[4; 97]))
                .is_err(),
            "a P-384 point is not an ES256 key"
        );
    }

    #[test]
    fn install_is_idempotent_and_jsonwebtoken_then_uses_ring() {
        assert!(install());
        assert!(install(), "a second install neither panics nor fails");
        let installed = CryptoProvider::try_get_default().expect("a default provider");
        assert!(std::ptr::eq(installed, &PROVIDER));
        let secret = b"a-test-secret-that-is-long-enough-0123456789";
        let claims = serde_json::json!({"sub": "kat", "exp": 4_000_000_000u64});
        let token = jsonwebtoken::encode(
            &jsonwebtoken::Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(secret).unwrap(),
        )
        .unwrap();
        let decoded = jsonwebtoken::decode::<serde_json::Value>(
            &token,
            &DecodingKey::from_secret(secret).unwrap(),
            &jsonwebtoken::Validation::new(Algorithm::HS256),
        )
        .unwrap();
        assert_eq!(decoded.claims, claims);
    }
}

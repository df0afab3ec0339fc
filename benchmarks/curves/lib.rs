//! `n` verifications of one signature over 1 KB, as the worker made them before it left public
//! keys to Web Crypto: Ed25519 with the key parsed once, checked strictly; ECDSA P-256 likewise.
//! Each returns how many verified (all of them); the caller times the call.

use ed25519_dalek::Signer;

const MESSAGE: [u8; 1024] = [7; 1024];

#[no_mangle]
pub extern "C" fn verify_ed25519(n: u32) -> u32 {
    let signing = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
    let signature = signing.sign(&MESSAGE);
    let public = signing.verifying_key();
    (0..n).filter(|_| public.verify_strict(core::hint::black_box(&MESSAGE), &signature).is_ok()).count() as u32
}

#[no_mangle]
pub extern "C" fn verify_p256(n: u32) -> u32 {
    use p256::ecdsa::signature::{Signer as _, Verifier};
    let signing = p256::ecdsa::SigningKey::from_slice(&[9; 32]).expect("a valid scalar");
    let signature: p256::ecdsa::Signature = signing.sign(&MESSAGE);
    let public = *signing.verifying_key();
    (0..n).filter(|_| public.verify(core::hint::black_box(&MESSAGE), &signature).is_ok()).count() as u32
}

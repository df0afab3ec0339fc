// Times public-key verification in workerd: `?what=` rust-ed25519 | rust-p256 (the wasm above) or
// webcrypto-ed25519 | webcrypto-p256 (`crypto.subtle.verify`, as src/web_crypto.rs calls it),
// `n` times over the same 1 KB. The caller times requests and subtracts `n=0`.
import wasm from "./curves.wasm";

const rust = new WebAssembly.Instance(wasm, {}).exports;
const message = new Uint8Array(1024).fill(7);

export default {
  async fetch(request) {
    const url = new URL(request.url);
    const what = url.searchParams.get("what");
    const n = Number(url.searchParams.get("n") || "0");
    if (what === "rust-ed25519") return new Response(String(rust.verify_ed25519(n)));
    if (what === "rust-p256") return new Response(String(rust.verify_p256(n)));
    const subtle = crypto.subtle;
    const [algorithm, keyAlgorithm, verifyAlgorithm] =
      what === "webcrypto-ed25519"
        ? ["Ed25519", { name: "Ed25519" }, "Ed25519"]
        : ["ECDSA", { name: "ECDSA", namedCurve: "P-256" }, { name: "ECDSA", hash: "SHA-256" }];
    const pair = await subtle.generateKey(keyAlgorithm, true, ["sign", "verify"]);
    const signature = await subtle.sign(verifyAlgorithm, pair.privateKey, message);
    // Imported as edgehook imports a configured key, once.
    const format = algorithm === "Ed25519" ? "raw" : "spki";
    const exported = await subtle.exportKey(format, pair.publicKey);
    const key = await subtle.importKey(format, exported, keyAlgorithm, false, ["verify"]);
    let verified = 0;
    for (let i = 0; i < n; i++) {
      if (await subtle.verify(verifyAlgorithm, key, signature, message.slice())) verified++;
    }
    return new Response(String(verified));
  },
};

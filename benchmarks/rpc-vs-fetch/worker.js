// A minimal worker for scripts/bench-rpc: each request calls one Durable Object with a
// 200-byte text, by `fetch` (/fetch) or by RPC (/rpc), or calls none (/none), so that the cost
// of one call each way can be read off the CPU that `wrangler dev`'s processes use.
import { DurableObject } from "cloudflare:workers";

export class Shard extends DurableObject {
  async fetch(request) {
    return new Response(String((await request.text()).length));
  }
  async ask(text) {
    return String(text.length);
  }
}

export default {
  async fetch(request, env) {
    const path = new URL(request.url).pathname;
    const stub = env.SHARD.get(env.SHARD.idFromName("one"));
    const text = "x".repeat(200);
    if (path === "/rpc") return new Response(await stub.ask(text));
    if (path === "/fetch") return stub.fetch("https://shard/", { method: "POST", body: text });
    return new Response("none");
  },
};

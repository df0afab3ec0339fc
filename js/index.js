// The bundle's entry (build/index.js), installed by scripts/build over worker-build's own, which
// it renames shim.js and imports.
//
// Why: edgehook's Durable Objects are called over Workers RPC (src/rpc.rs explains the cost of
// `fetch`), and workerd answers RPC only on classes that extend `DurableObject`. The classes
// worker-build generates do not, so each is wrapped here in one that does, and its calls are
// forwarded to the wasm object: `ask` (edgehook's one RPC method), `fetch` (callers still on
// the previous version during a deploy) and `alarm`.
import { DurableObject } from "cloudflare:workers";
import worker, {
  ControlObject as ControlWasm,
  GateObject as GateWasm,
  IdempotencyShard as IdempotencyWasm,
} from "./shim.js";

function callable(Wasm) {
  return class extends DurableObject {
    #wasm;
    constructor(ctx, env) {
      super(ctx, env);
      this.#wasm = new Wasm(ctx, env);
    }
    ask(text) {
      return this.#wasm.ask(text);
    }
    fetch(request) {
      return this.#wasm.fetch(request);
    }
    // Only the idempotency shards' wasm class has `alarm` (src/idempotency.rs): the other
    // objects never set one, so workerd never calls it on them.
    alarm() {
      return this.#wasm.alarm();
    }
  };
}

export const ControlObject = callable(ControlWasm);
export const GateObject = callable(GateWasm);
export const IdempotencyShard = callable(IdempotencyWasm);
export default worker;

// The demo destination for `scripts/dev`: prints every event edgehook forwards and checks its
// Standard Webhooks signature with the demo DESTINATION_SECRET, and prints the alerts edgehook
// sends to /alerts (the demo ALERT_URL). Answers 204.
import { createServer } from "node:http";
import { createHmac, timingSafeEqual } from "node:crypto";
import { readFileSync } from "node:fs";

const port = Number(process.argv[2] || 8788);
const env = Object.fromEntries(
  readFileSync(new URL("./demo.env", import.meta.url), "utf8")
    .split("\n").filter((l) => /^[A-Z_]+=/.test(l)).map((l) => l.split(/=(.*)/s).slice(0, 2)),
);
const key = Buffer.from(env.DEMO_DESTINATION_SECRET.replace(/^whsec_/, ""), "base64");

function verify(id, ts, body, header) {
  const expected = createHmac("sha256", key).update(`${id}.${ts}.`).update(body).digest();
  return (header || "").split(" ").some((sig) => {
    const [version, b64] = sig.split(",");
    const got = Buffer.from(b64 || "", "base64");
    return version === "v1" && got.length === expected.length && timingSafeEqual(got, expected);
  });
}

createServer((req, res) => {
  const chunks = [];
  req.on("data", (c) => chunks.push(c));
  req.on("end", () => {
    const body = Buffer.concat(chunks);
    const h = req.headers;
    if (req.url === "/alerts") {
      let text = body.toString();
      try { text = JSON.parse(text).text; } catch {}
      console.log(`[demo alert] ${text}`);
      return res.writeHead(204).end();
    }
    const ok = verify(h["webhook-id"], h["webhook-timestamp"], body, h["webhook-signature"]);
    console.log(
      `[demo destination] ${req.method} ${req.url} source=${h["x-edgehook-source"]} id=${h["webhook-id"]} ` +
        `type=${h["x-edgehook-event-type"] ?? "-"} attempt=${h["x-edgehook-attempt"]} bytes=${body.length} ` +
        `signature=${ok ? "valid" : "INVALID"}`,
    );
    res.writeHead(204).end();
  });
}).listen(port, "127.0.0.1", () => console.log(`[demo destination] listening on http://127.0.0.1:${port}`));

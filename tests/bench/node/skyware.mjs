// The peer labeler for tests/bench/labeler_peer.sh: npm @skyware/labeler 0.2.0 as shipped, on a
// fresh libsql file, loaded with the same labels the atmos run published (uri
// did:plc:bench<i, 19 digits>, val clean-sender, signed with secp256k1 by the server itself).
// usage: node skyware.mjs PORT DBPATH LABELS   — prints "listening" once every label is stored.
import { LabelerServer } from "@skyware/labeler";
import { randomBytes } from "node:crypto";

const [port, dbPath, count] = process.argv.slice(2);
const server = new LabelerServer({
  did: "did:plc:skywarebenchlabeler0000",
  signingKey: randomBytes(32).toString("hex"),
  dbPath,
});
// Eight in flight, as labelbench publishes to atmos.
let next = 0;
const worker = async () => {
  for (let i = next++; i < Number(count); i = next++) {
    await server.createLabel({ uri: `did:plc:bench${String(i).padStart(19, "0")}`, val: "clean-sender" });
  }
};
const started = Date.now();
await Promise.all(Array.from({ length: 8 }, worker));
const seconds = (Date.now() - started) / 1000;
server.start({ port: Number(port), host: "127.0.0.1" }, (err) => {
  if (err) { console.error(err); process.exit(1); }
  console.log(JSON.stringify({ listening: Number(port), labels: Number(count), publish_labels_per_s: Math.round(Number(count) / seconds) }));
});

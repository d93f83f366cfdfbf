// uWebSockets.js (the npm package @trufflesuite/uws-js-unofficial, prebuilt) as a peer
// in benches/run: `node server.js --port N --mode echo|broadcast [--cert FILE --key FILE]`
// (with a certificate and key: TLS, uWS.SSLApp).
//   echo:      every message goes back to its sender, as received.
//   broadcast: every client subscribes to one topic; every message is published to it
//              (uWS's own pub/sub, the sender included, as ringsocket's broadcast app).
// Compression off, no idle timeout, 16 MiB messages: the same terms as the others.
"use strict";
const uWS = require("@trufflesuite/uws-js-unofficial");

const arg = (name, fallback) => {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : fallback;
};
const port = parseInt(arg("--port", "8080"), 10);
const mode = arg("--mode", "echo");
if (mode !== "echo" && mode !== "broadcast") {
  console.error(`--mode must be echo or broadcast, not ${mode}`);
  process.exit(2);
}

const cert = arg("--cert", null);
const app = cert ? uWS.SSLApp({ cert_file_name: cert, key_file_name: arg("--key", "") }) : uWS.App();
app.ws("/*", {
  compression: uWS.DISABLED,
  maxPayloadLength: 16 * 1024 * 1024,
  maxBackpressure: 64 * 1024 * 1024,
  idleTimeout: 0,
  open: (ws) => {
    if (mode === "broadcast") ws.subscribe("all");
  },
  message: (ws, message, isBinary) => {
    if (mode === "echo") ws.send(message, isBinary);
    else app.publish("all", message, isBinary);
  },
});
app.listen("127.0.0.1", port, (token) => {
  if (!token) {
    console.error(`cannot listen on 127.0.0.1:${port}`);
    process.exit(1);
  }
});

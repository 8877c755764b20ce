// A CoAP over WebSocket client (RFC 8323 §4) built on Debian's node-ws, not on our code: it opens
// URL with the `coap` subprotocol, sends its CSM, one request per PATH (GET, or POST with --post
// BODY), and prints one JSON line per answer: {"path", "code", "payload"}; then closes.
// Usage: node ws_client.js URL [--ca FILE] [--psk IDENTITY KEY] [--post BODY] PATH...
'use strict';
const fs = require('fs');
const WebSocket = require('/usr/share/nodejs/ws');

const args = process.argv.slice(2);
const url = args.shift();
const options = { perMessageDeflate: false, handshakeTimeout: 5000 };
let post = null;
const paths = [];
while (args.length) {
  const a = args.shift();
  if (a === '--ca') options.ca = fs.readFileSync(args.shift());
  else if (a === '--psk') {
    const identity = args.shift(), key = Buffer.from(args.shift());
    options.pskCallback = () => ({ identity, psk: key });
    options.ciphers = 'PSK-AES128-GCM-SHA256';
    options.maxVersion = 'TLSv1.2';
    options.checkServerIdentity = () => undefined;
  } else if (a === '--post') post = Buffer.from(args.shift());
  else paths.push(a);
}

// A §4.4 frame: Len nibble 0, TKL; Code; Token; options (RFC 7252 encoding); payload.
function frame(code, token, path, payload) {
  const parts = [Buffer.from([token.length, code]), token];
  let last = 0;
  for (const seg of path.split('/').filter((s) => s.length)) {
    const value = Buffer.from(seg), delta = 11 - last;
    last = 11;
    if (value.length < 13) parts.push(Buffer.from([(delta << 4) | value.length]));
    else parts.push(Buffer.from([(delta << 4) | 13, value.length - 13]));
    parts.push(value);
  }
  if (payload && payload.length) parts.push(Buffer.from([0xff]), payload);
  return Buffer.concat(parts);
}

function parse(buf) {
  const tkl = buf[0] & 0x0f, code = buf[1];
  const token = buf.subarray(2, 2 + tkl);
  const marker = buf.indexOf(0xff, 2 + tkl);  // good enough for the gateway's answers to these requests
  return { code, token, payload: marker >= 0 ? buf.subarray(marker + 1).toString() : '' };
}

const ws = new WebSocket(url, 'coap', options);
const pending = new Map();
ws.on('open', () => {
  ws.send(Buffer.from([0x00, 0xe1]));  // CSM
  paths.forEach((p, i) => {
    const token = Buffer.from([0x40 + i]);
    pending.set(token.toString('hex'), p);
    ws.send(frame(post ? 0x02 : 0x01, token, p, post));
  });
});
ws.on('message', (data) => {
  const m = parse(Buffer.from(data));
  if ((m.code >> 5) === 7) return;  // signalling (the gateway's CSM)
  const key = m.token.toString('hex');
  if (!pending.has(key)) return;
  const code = `${m.code >> 5}.${String(m.code & 0x1f).padStart(2, '0')}`;
  console.log(JSON.stringify({ path: pending.get(key), code, payload: m.payload }));
  pending.delete(key);
  if (pending.size === 0) ws.close(1000);
});
ws.on('error', (e) => { console.error('ws error: ' + e.message); process.exitCode = 2; });
ws.on('unexpected-response', (req, res) => { console.error('http ' + res.statusCode); process.exitCode = 3; ws.terminate(); });
ws.on('close', (code) => { if (pending.size) { console.error('closed with ' + pending.size + ' unanswered, code ' + code); process.exitCode = process.exitCode || 4; } });
setTimeout(() => { console.error('timeout'); process.exit(5); }, 10000).unref();

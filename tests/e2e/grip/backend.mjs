// A WebSocket-over-HTTP backend written the way one is written for Pushpin
// in Node: the standard http module plus the unmodified GRIP library
// (npm `@fanoutio/grip`) to verify Grip-Sig, decode the events into a
// WebSocketContext and encode the reply.
//
//     node backend.mjs KEY PORT
//
// Prints `listening PORT`. On open: accept, subscribe to "room", say
// "welcome from node" and set meta "user=ann". Messages: "echo X" -> X,
// "meta" -> "user=<meta user>", binary -> the same bytes back, "close" ->
// close with 4010.
import http from 'node:http';
import { encodeWebSocketEvents, getWebSocketContextFromNodeReq, validateSig } from '@fanoutio/grip';

const [key, port] = process.argv.slice(2);

const server = http.createServer(async (req, res) => {
  if (!(await validateSig(req.headers['grip-sig'] ?? '', key))) {
    res.writeHead(401).end('bad Grip-Sig\n');
    return;
  }
  const ws = await getWebSocketContextFromNodeReq(req);
  if (ws.isOpening()) {
    ws.accept();
    ws.subscribe('room');
    ws.send('welcome from node');
    ws.meta.user = 'ann';
  }
  while (ws.canRecv()) {
    let raw;
    try {
      raw = ws.recvRaw();
    } catch {
      break; // DISCONNECT: the client is gone, nothing to answer
    }
    if (raw == null) {
      ws.close();
      break;
    }
    if (raw instanceof Uint8Array) {
      ws.sendBinary(raw);
      continue;
    }
    const [command, ...rest] = raw.split(' ');
    if (command === 'echo') ws.send(rest.join(' '));
    else if (command === 'meta') ws.send(`user=${ws.meta.user ?? ''}`);
    else if (command === 'close') ws.close(4010);
  }
  const body = encodeWebSocketEvents(ws.getOutgoingEvents());
  res.writeHead(200, ws.toHeaders()).end(Buffer.from(body));
});
server.listen(Number(port), '127.0.0.1', () => console.log(`listening ${server.address().port}`));

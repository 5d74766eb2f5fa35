// Publishes through the GRIP endpoint with the unmodified Node GRIP library
// (npm `@fanoutio/grip`), as a backend written for Pushpin does.
//
//     node publish.mjs CONTROL_URL KEY CHANNEL text|binary|close
//
// Prints "published" on success, or the library's error and exits 1.
import { Publisher, WebSocketMessageFormat } from '@fanoutio/grip';

const [controlUri, key, channel, kind] = process.argv.slice(2);
const publisher = new Publisher({ control_uri: controlUri, control_iss: 'my-app', key });
let format;
if (kind === 'text') format = new WebSocketMessageFormat('hello from @fanoutio/grip');
else if (kind === 'binary') format = new WebSocketMessageFormat(new Uint8Array([0, 1, 254]));
else if (kind === 'close') format = new WebSocketMessageFormat(null, true, 4002);
else throw new Error(`unknown kind ${kind}`);
try {
  await publisher.publishFormats(channel, format);
  console.log('published');
} catch (e) {
  // The library's PublishException carries the HTTP status in its context.
  console.log(`${e?.context?.statusCode ?? ''} ${e?.message ?? e}`);
  process.exit(1);
}

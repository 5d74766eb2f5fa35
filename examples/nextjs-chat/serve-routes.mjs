// Serves the app's route handlers with Node's own HTTP server, the way
// Next.js calls them (a web Request in, a Response out), without Next: the
// end-to-end tests run the handlers unchanged this way.
//
//   node serve-routes.mjs <bundled routes module>     (PORT, SLIP_CONTROL_API, SLIP_JWT_SECRET from the environment)
//
// The module exports `slip` and `announce`, the two route modules (the
// tests bundle them with esbuild, `slip-sockets` resolved to js/).
import { createServer } from 'node:http'
import { pathToFileURL } from 'node:url'

/** Largest request body read (callbacks from the gateway are far smaller). */
const MAX_BODY_BYTES = 4 * 1024 * 1024

const routes = await import(pathToFileURL(process.argv[2]).href)
const handlers = { '/api/slip': routes.slip.POST, '/api/announce': routes.announce.POST }

const server = createServer(async (req, res) => {
  const handler = req.method === 'POST' ? handlers[new URL(req.url, 'http://x').pathname] : undefined
  if (!handler) {
    res.writeHead(404).end()
    return
  }
  const chunks = []
  let size = 0
  for await (const chunk of req) {
    size += chunk.length
    if (size > MAX_BODY_BYTES) {
      res.writeHead(413).end()
      return
    }
    chunks.push(chunk)
  }
  const request = new Request(`http://${req.headers.host}${req.url}`, {
    method: 'POST',
    headers: Object.entries(req.headers).flatMap(([k, v]) => (Array.isArray(v) ? v.map((x) => [k, x]) : [[k, v]])),
    body: Buffer.concat(chunks),
  })
  try {
    const response = await handler(request)
    res.writeHead(response.status, Object.fromEntries(response.headers))
    res.end(Buffer.from(await response.arrayBuffer()))
  } catch (err) {
    console.error(err)
    res.writeHead(500).end(String(err))
  }
})
server.listen(Number(process.env.PORT ?? 3000), '127.0.0.1', () => {
  console.log(`routes on http://127.0.0.1:${server.address().port}/api/slip`)
})

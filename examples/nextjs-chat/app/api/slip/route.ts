// The callback route: SLIP Sockets POSTs every socket event here. Below the
// configuration is the original SLIP Sockets README's handler, unchanged
// but for the import.
import { SlipSocketPublisher, assertUnreachable } from 'slip-sockets'

// The gateway's HTTP control API and the secret it shares with this app
// (`slip dev --jwt-secret ...`). The fallback is for local development only.
const controlApi = process.env.SLIP_CONTROL_API ?? 'http://127.0.0.1:7070/'
const jwtSecret = process.env.SLIP_JWT_SECRET ?? (process.env.NODE_ENV === 'production' ? '' : 'local-development-only-not-a-real-secret')

const wsPublisher = new SlipSocketPublisher({ controlApi, jwtSecret })

export async function POST(request: Request) {
  const connection = await wsPublisher.parseRequest(request)
  if (!connection) {
    return new Response('Invalid token', {
      status: 403,
    })
  }

  for (const event of connection.inEvents) {
    if (event.type === 'OPEN') {
      connection.accept()
      connection.subscribe('cool-channel')
      connection.publishText('cool-channel', 'New connection has joined!')
      connection.sendText('Welcome to the cool channel, be nice or get out')
      continue
    }
    if (event.type ==='CLOSE') {
      connection.publish('cool-channel', 'A Connection has left')
      continue
    }

    if (event.type === 'TEXT') {
      if (event.data === 'quit') {
        connection.close()
        continue
      }
      connection.publishText('cool-channel', `${event.connectionId} says ${event.text}`)
      continue
    }

    assertUnreachable(event)
  }

  return connection.endResponse()
}

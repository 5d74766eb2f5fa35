// Publishing from anywhere in the app, not only in reply to a callback:
// POST /api/announce with a text body sends it to everyone in the room.
import { SlipSocketPublisher } from 'slip-sockets'

const controlApi = process.env.SLIP_CONTROL_API ?? 'http://127.0.0.1:7070/'
const jwtSecret = process.env.SLIP_JWT_SECRET ?? (process.env.NODE_ENV === 'production' ? '' : 'local-development-only-not-a-real-secret')

const publisher = new SlipSocketPublisher({ controlApi, jwtSecret })

export async function POST(request: Request) {
  await publisher.send([{ type: 'PUBLISH_TEXT', channelId: 'cool-channel', data: await request.text() }])
  return new Response(null, { status: 204 })
}

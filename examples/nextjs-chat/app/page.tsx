'use client'
// The chat page, on @slip-sockets/client: it reconnects by itself and
// resumes its session, so a dropped connection or a redeployed edge loses
// no line. The gateway's WebSocket URL comes from NEXT_PUBLIC_SLIP_URL.
import { useEffect, useRef, useState } from 'react'
import { SlipClient } from '@slip-sockets/client'

const url = process.env.NEXT_PUBLIC_SLIP_URL ?? 'ws://127.0.0.1:8080/'

export default function Chat() {
  const client = useRef<SlipClient | null>(null)
  const [lines, setLines] = useState<string[]>([])
  const [state, setState] = useState('connecting')
  const [text, setText] = useState('')

  useEffect(() => {
    const c = new SlipClient(url)
    const add = (line: string) => setLines((old) => [...old, line])
    c.on('state', setState)
    c.on('message', (m) => add(m.data ?? '(binary)'))
    c.on('publication', (p) => add(p.data ?? '(binary)'))
    c.on('session', (s) => {
      if (s.resumed && !s.recovered) add(`(reconnected; could not recover: ${s.lost.join(', ')})`)
    })
    client.current = c
    return () => c.close()
  }, [])

  return (
    <main>
      <h1>Cool channel</h1>
      <p>{state}</p>
      <ul>{lines.map((line, i) => <li key={i}>{line}</li>)}</ul>
      <form
        onSubmit={(e) => {
          e.preventDefault()
          if (text && client.current?.send(text)) setText('')
        }}
      >
        <input value={text} onChange={(e) => setText(e.target.value)} placeholder="Say something (quit leaves)" />
        <button>Send</button>
      </form>
    </main>
  )
}

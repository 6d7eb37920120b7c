// Clients of every endpoint for the mixed and MQTT suites: the V3 client (ws-text), a small
// JSON client of our own (ws-json), the `mqtt` package, and @deepstream/client 7 (ws-binary,
// from tests/node). Every client is closed when the file's tests end.
import { after } from 'node:test'
import { createRequire } from 'node:module'

const require = createRequire(import.meta.url)
const deepstreamV3 = require('deepstream.io-client-js')
const WebSocket = require('ws')
export const mqtt = require('mqtt')

const open = []
after(async () => { while (open.length) { try { await open.pop()() } catch {} } })

// Runs `close` when the file's tests end.
export const closeAtEnd = close => open.push(close)

export const sleep = ms => new Promise(resolve => setTimeout(resolve, ms))
export const uniq = prefix => `${prefix}/${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`
export const within = (promise, ms, what) => Promise.race([promise, sleep(ms).then(() => { throw new Error(`timed out: ${what}`) })])
export const until = async (check, what, ms = 3000) => {
  for (let waited = 0; waited < ms; waited += 20) { if (check()) return; await sleep(20) }
  throw new Error(`timed out: ${what}`)
}

export function v3Login (url, authData) {
  const c = deepstreamV3(url, { maxReconnectAttempts: 0, silentDeprecation: true })
  c.errors = []
  c.on('error', (error, event) => c.errors.push(`${event}: ${error}`))
  open.push(() => c.close())
  return within(new Promise((resolve, reject) => {
    c.login(authData, (ok, data) => ok ? resolve(c) : reject(new Error(`v3 login refused: ${data}`)))
  }), 3000, 'v3 login')
}

// A raw V3 connection: `frames` keeps every message received as `T|A|…` text, `send` takes
// the same form (for what the V3 client itself would not send).
export async function rawV3 (url) {
  const ws = new WebSocket(url)
  open.push(() => ws.close())
  const frames = []
  ws.on('message', data => frames.push(...String(data).split('\x1e').filter(Boolean).map(m => m.split('\x1f').join('|'))))
  await within(new Promise(resolve => ws.on('open', resolve)), 3000, 'open')
  const send = text => ws.send(text.split('|').join('\x1f') + '\x1e')
  return { frames, send }
}

export async function v7Login (url, authData) {
  const v7 = createRequire(`${process.env.DS_CLIENT_HOME}/package.json`)('@deepstream/client')
  const c = new v7.DeepstreamClient(url, { offlineEnabled: false, maxReconnectAttempts: 0 })
  c.errors = []
  c.on('error', (error, event) => c.errors.push(String(event || error)))
  open.push(() => c.close())
  await within(c.login(authData), 3000, 'v7 login')
  return c
}

// A JSON client: messages are objects; `received` keeps everything that came.
export async function jsonLogin (url, authData) {
  const ws = new WebSocket(url)
  open.push(() => ws.close())
  const client = {
    received: [],
    send: message => ws.send(JSON.stringify(message)),
    async next (match, what) {
      let found
      await until(() => (found = client.received.find(match)) !== undefined, what)
      client.received.splice(client.received.indexOf(found), 1)
      return found
    }
  }
  ws.on('message', data => client.received.push(JSON.parse(String(data))))
  await within(new Promise((resolve, reject) => { ws.on('open', resolve); ws.on('error', reject) }), 3000, 'json open')
  client.send({ topic: 2, action: 5, url })
  await client.next(m => m.topic === 2 && m.action === 4, 'json accept')
  client.send({ topic: 3, action: 2, data: JSON.stringify(authData) })
  await client.next(m => m.topic === 3 && m.action === 3, 'json login')
  return client
}

export async function mqttConnect (port, username, password, extra = {}) {
  const client = await mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, {
    username, password, protocolVersion: 4, reconnectPeriod: 0, connectTimeout: 3000, ...extra
  })
  client.messages = []
  client.on('message', (topic, payload, packet) => client.messages.push({ topic, payload: String(payload), retain: packet.retain }))
  open.push(() => client.endAsync(true))
  return client
}

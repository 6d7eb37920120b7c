// Prints what a JSON client (ws-json at argv[2]) receives for a fixed scenario, normalised so
// that deepstream's own quirks in how it spells a field do not count: `data` and `parsedData`
// become one parsed `value`, and `isAck` is dropped (the reference leaves it out). Two
// servers that behave alike print the same transcript (`url`, which names the port, and a
// false `isWriteAck` are left out too).
import { createRequire } from 'node:module'
const require = createRequire(import.meta.url)
const WebSocket = require('ws')

const url = process.argv[2]
const suffix = process.argv[3] || 'x'
const sleep = ms => new Promise(resolve => setTimeout(resolve, ms))
const normal = m => {
  const out = { ...m }
  const value = m.parsedData !== undefined ? m.parsedData : (m.data !== undefined ? JSON.parse(m.data) : undefined)
  delete out.data; delete out.parsedData; delete out.isAck; delete out.isError; delete out.url
  if (out.isWriteAck === false) delete out.isWriteAck
  if (value !== undefined) out.value = value
  if (Array.isArray(out.names) && out.names.length === 0) delete out.names
  const sorted = {}
  for (const key of Object.keys(out).sort()) sorted[key] = out[key]
  return JSON.stringify(sorted)
}
const clients = {}
async function open (who) {
  const ws = new WebSocket(url)
  ws.on('message', d => console.log(who, '<', normal(JSON.parse(String(d)))))
  await new Promise(resolve => ws.on('open', resolve))
  clients[who] = ws
}
await open('A'); await open('B')
const r = `json-rec-${suffix}`
const e = `json-ev-${suffix}`
const steps = [
  ['A', { topic: 2, action: 5, url }], ['B', { topic: 2, action: 5, url }],
  ['A', { topic: 3, action: 2, data: '{"username":"a"}' }], ['B', { topic: 3, action: 2, data: '{"username":"b"}' }],
  ['B', { topic: 4, action: 3, names: [e], correlationId: 'k1' }],
  ['A', { topic: 4, action: 2, name: e, data: '{"n":1}' }],
  ['A', { topic: 5, action: 23, names: [r], correlationId: 'k2' }],
  ['B', { topic: 5, action: 23, names: [r], correlationId: 'k3' }],
  ['A', { topic: 5, action: 18, name: r, version: 1, data: '{"a":1}', isWriteAck: true, correlationId: 'k4' }],
  ['A', { topic: 5, action: 19, name: r, version: 2, path: 'b', data: '2' }],
  ['B', { topic: 5, action: 18, name: r, version: 2, data: '{"c":3}' }],
  ['B', { topic: 5, action: 5, name: r }],
  ['A', { topic: 6, action: 8, names: ['json-rpc'], correlationId: 'k5' }],
  ['B', { topic: 6, action: 2, name: 'json-rpc', correlationId: 'c1', data: '{"x":1}' }],
  ['A', { topic: 6, action: 4, name: 'json-rpc', correlationId: 'c1' }],
  ['A', { topic: 6, action: 5, name: 'json-rpc', correlationId: 'c1', data: '42' }],
  ['B', { topic: 7, action: 2 }],
  ['B', { topic: 4, action: 4, names: [e], correlationId: 'k6' }]
]
for (const [who, message] of steps) {
  await sleep(120)
  console.log(who, '>', normal(message))
  clients[who].send(JSON.stringify(message))
}
await sleep(400)
for (const ws of Object.values(clients)) ws.close()

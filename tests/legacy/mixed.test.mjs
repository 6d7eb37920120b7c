// The four kinds of client at once: @deepstream/client 7 (ws-binary, DS_URL), the V3 client
// (ws-text, DS_V3_URL), a JSON client (ws-json, DS_JSON_URL) and an MQTT client (DS_MQTT_PORT)
// exchange events, records and RPC through the same shards.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { v3Login, v7Login, jsonLogin, mqttConnect, uniq, until, within, sleep } from './helpers.mjs'

const alice = { username: 'alice', password: 'secret' }
const bob = { username: 'bob', password: 'secret' }
const env = process.env

async function everyone () {
  const [v7, v3, json, mq] = await Promise.all([
    v7Login(env.DS_URL, alice), v3Login(env.DS_V3_URL, bob), jsonLogin(env.DS_JSON_URL, alice), mqttConnect(Number(env.DS_MQTT_PORT), 'bob', 'secret')
  ])
  return { v7, v3, json, mq }
}

test('an event from each kind of client reaches all the others', async () => {
  const { v7, v3, json, mq } = await everyone()
  const name = uniq('mixed-ev')
  const got = { v7: [], v3: [] }
  v7.event.subscribe(name, d => got.v7.push(d))
  v3.event.subscribe(name, d => got.v3.push(d))
  json.send({ topic: 4, action: 3, names: [name], correlationId: 'sub1' })
  await json.next(m => m.topic === 4 && m.action === 3 && m.isAck, 'json subscribed')
  await mq.subscribeAsync(name)
  await sleep(150)
  v7.event.emit(name, { from: 'v7' })
  v3.event.emit(name, { from: 'v3' })
  json.send({ topic: 4, action: 2, name, data: JSON.stringify({ from: 'json' }) })
  await mq.publishAsync(name, 'from mqtt')
  await until(() => got.v7.length === 4 && got.v3.length === 4 && mq.messages.length === 3, 'every event everywhere').catch(e => { throw new Error(`${e.message}: ${JSON.stringify([got, mq.messages, json.received])}`) })
  // Both deepstream clients also hand their own emits to their own subscribers.
  const all = new Set(['{"from":"v7"}', '{"from":"v3"}', '{"from":"json"}', '"from mqtt"'])
  assert.deepEqual(new Set(got.v7.map(JSON.stringify)), all)
  assert.deepEqual(new Set(got.v3.map(JSON.stringify)), all)
  assert.deepEqual(new Set(mq.messages.map(m => m.payload)), new Set(['{"from":"v7"}', '{"from":"v3"}', '{"from":"json"}']))
  await until(() => json.received.filter(m => m.topic === 4 && m.action === 2).length === 3, 'json got three')
  assert.deepEqual(new Set(json.received.filter(m => m.topic === 4 && m.action === 2).map(m => m.data)), new Set(['{"from":"v7"}', '{"from":"v3"}', '"from mqtt"']))
})

test('a record written by each kind of client is read by the others', async () => {
  const { v7, v3, json, mq } = await everyone()
  const name = uniq('mixed-rec')
  const r7 = v7.record.getRecord(name)
  await r7.whenReady()
  r7.set({ a: 1 })
  const r3 = v3.record.getRecord(name)
  await within(new Promise(resolve => r3.whenReady(resolve)), 3000, 'v3 ready')
  await until(() => r3.get('a') === 1, 'v3 sees v7 write')
  r3.set('b', 2)
  await until(() => r7.get('b') === 2, 'v7 sees v3 path write')
  json.send({ topic: 5, action: 18, name, version: 3, data: JSON.stringify({ a: 1, b: 2, c: 3 }), isWriteAck: true, correlationId: 'w1' })
  await json.next(m => m.topic === 5 && m.action === 14 && m.correlationId === 'w1', 'json write ack')
  await until(() => r7.get('c') === 3 && r3.get('c') === 3, 'json write seen')
  await within(mq.publishAsync(name, '{"d":4}', { qos: 1, retain: true }), 3000, 'mqtt retained write')
  await until(() => r7.get('d') === 4 && r3.get('d') === 4, 'mqtt write seen')
  json.send({ topic: 5, action: 3, name })
  const read = await json.next(m => m.topic === 5 && m.action === 4, 'json read')
  assert.deepEqual(JSON.parse(read.data), { d: 4 })
  assert.equal(read.version, 4)
})

test('RPC crosses endpoints both ways', async () => {
  const { v7, v3, json } = await everyone()
  const add = uniq('mixed-add')
  v7.rpc.provide(add, (data, response) => response.send(data.a + data.b))
  const twice = uniq('mixed-twice')
  v3.rpc.provide(twice, (data, response) => response.send(data * 2))
  await sleep(200)
  const fromV3 = await within(new Promise(resolve => v3.rpc.make(add, { a: 2, b: 3 }, (e, r) => resolve([e, r]))), 3000, 'v3 calls v7')
  assert.deepEqual(fromV3, [null, 5])
  assert.equal(await within(v7.rpc.make(twice, 21), 3000, 'v7 calls v3'), 42)
  json.send({ topic: 6, action: 2, name: add, correlationId: 'c1', data: JSON.stringify({ a: 40, b: 2 }) })
  const response = await json.next(m => m.topic === 6 && m.action === 5 && m.correlationId === 'c1', 'json rpc response')
  assert.equal(JSON.parse(response.data), 42)
})

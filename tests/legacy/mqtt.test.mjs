// MQTT clients (the `mqtt` package) on corestream's mqtt endpoint at DS_MQTT_PORT, with
// @deepstream/client 7 on ws-binary at DS_URL seeing the same data; logins through the file
// auth (alice and bob, password "secret") and Valve rules of tests/node/permissions.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mqttConnect, v7Login, uniq, until, within, sleep } from './helpers.mjs'

const PORT = Number(process.env.DS_MQTT_PORT)
const URL = process.env.DS_URL
const alice = { username: 'alice', password: 'secret' }

test('a wrong password is refused with CONNACK 5', async () => {
  await assert.rejects(mqttConnect(PORT, 'alice', 'wrong'), e => /Not authorized|Bad username|5/i.test(String(e.message)))
})

test('publishes reach MQTT subscribers and deepstream subscribers alike', async () => {
  const [sub, pub, ds] = await Promise.all([mqttConnect(PORT, 'bob', 'secret'), mqttConnect(PORT, 'alice', 'secret'), v7Login(URL, alice)])
  const topic = uniq('mqtt-ev')
  const granted = await sub.subscribeAsync(topic, { qos: 1 })
  assert.deepEqual(granted.map(g => g.qos), [0])
  const seen = []
  ds.event.subscribe(topic, data => seen.push(data))
  await sleep(150)
  await pub.publishAsync(topic, 'hello', { qos: 0 })
  await pub.publishAsync(topic, '{"n":7}', { qos: 1 })
  await until(() => sub.messages.length === 2 && seen.length === 2, 'both delivered')
  assert.deepEqual(sub.messages.map(m => m.payload), ['"hello"', '"{\\"n\\":7}"'])
  assert.deepEqual(seen, ['hello', '{"n":7}'])
  // A deepstream emit reaches the MQTT subscriber as its JSON text.
  ds.event.emit(topic, { from: 'ws' })
  await until(() => sub.messages.length === 3, 'ws emit delivered')
  assert.equal(sub.messages[2].payload, '{"from":"ws"}')
})

test('a retained publish writes the record, acknowledged once stored', async () => {
  const [pub, ds] = await Promise.all([mqttConnect(PORT, 'alice', 'secret'), v7Login(URL, alice)])
  const name = uniq('mqtt-rec')
  await within(pub.publishAsync(name, '{"m":8}', { qos: 1, retain: true }), 3000, 'puback')
  const snapshot = await within(ds.record.snapshot(name), 3000, 'snapshot')
  assert.deepEqual(snapshot, { m: 8 })
  // A subscriber that comes later gets the record as a retained message, then its updates.
  const late = await mqttConnect(PORT, 'bob', 'secret')
  await late.subscribeAsync(name, { qos: 0 })
  await until(() => late.messages.length === 1, 'retained record')
  assert.deepEqual(late.messages[0], { topic: name, payload: '{"m":8}', retain: true })
  const record = ds.record.getRecord(name)
  await record.whenReady()
  record.set({ m: 9 })
  await until(() => late.messages.some(m => m.payload === '{"m":9}'), 'record update')
})

test('Valve applies: a denied subscription fails in SUBACK, a denied publish goes nowhere', async () => {
  const [bob, alicePub, ds] = await Promise.all([mqttConnect(PORT, 'bob', 'secret'), mqttConnect(PORT, 'alice', 'secret'), v7Login(URL, alice)])
  // The SUBACK's return codes as sent (the package turns a failure code into an error).
  const codes = new Promise(resolve => bob.on('packetreceive', p => { if (p.cmd === 'suback') resolve(p.granted) }))
  bob.subscribe([uniq('private'), uniq('open')], { qos: 0 }, () => {})
  assert.deepEqual(await within(codes, 3000, 'suback'), [128, 0])
  const topic = uniq('readonly')
  const seen = []
  ds.event.subscribe(topic, data => seen.push(data))
  await sleep(150)
  await alicePub.publishAsync(topic, 'nope', { qos: 0 })
  await sleep(300)
  assert.deepEqual(seen, [])
})

test('keep-alive pings are answered, unsubscribe stops delivery', async () => {
  const client = await mqttConnect(PORT, 'bob', 'secret', { keepalive: 1 })
  const topic = uniq('mqtt-unsub')
  await client.subscribeAsync(topic)
  await sleep(2500)
  assert.equal(client.connected, true, 'alive past two keep-alive periods')
  await client.unsubscribeAsync(topic)
  const pub = await mqttConnect(PORT, 'alice', 'secret')
  await pub.publishAsync(topic, 'x')
  await sleep(300)
  assert.equal(client.messages.length, 0)
})

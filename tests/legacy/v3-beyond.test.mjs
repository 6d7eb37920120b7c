// Where corestream's ws-text endpoint answers what the reference 7.0.2 leaves unanswered (or
// answers wrongly) for the V3 client: `has`, an RPC error's
// text, and input it cannot read. Runs against corestream only.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { v3Login, rawV3, sleep, uniq, within } from './helpers.mjs'

const URL = process.env.DS_V3_URL
const login = username => v3Login(URL, { username })

test('has tells whether a record exists', async () => {
  const c = await login('v3b-has')
  const name = uniq('v3b-has')
  const has = () => within(new Promise(resolve => c.record.has(name, (e, h) => resolve([e, h]))), 3000, 'has')
  assert.deepEqual(await has(), [null, false])
  await within(new Promise(resolve => c.record.setData(name, { a: 1 }, resolve)), 3000, 'write')
  assert.deepEqual(await has(), [null, true])
})

test('an RPC error reaches the caller as its text', async () => {
  const [provider, caller] = await Promise.all([login('v3b-p'), login('v3b-q')])
  const name = uniq('v3b-rpc')
  provider.rpc.provide(name, (data, response) => response.error('it failed'))
  await sleep(150)
  const result = await within(new Promise(resolve => caller.rpc.make(name, 1, (e, r) => resolve([e, r]))), 3000, 'rpc')
  assert.deepEqual(result, ['it failed', undefined])
})

test('input the V3 protocol cannot carry is answered and the connection lives on', async () => {
  const { frames, send } = await rawV3(URL)
  send('A|REQ|{"username":"raw"}')
  for (const bad of ['X|Y', 'R|ZZ|q', 'U|S|US', 'E|EVT|n|Qbad', 'R|U|r|x|{}', 'R|U']) send(bad)
  send('E|S|still-here')
  const want = ['A|A', 'X|E|UNKNOWN_TOPIC|X', 'R|E|UNKNOWN_ACTION|unknown action ZZ', 'U|E|INVALID_MESSAGE_DATA|US',
    'E|E|INVALID_MESSAGE_DATA|Qbad', 'R|E|INVALID_MESSAGE_DATA|x', 'E|A|S|still-here']
  for (let i = 0; i < 100 && !want.every(w => frames.includes(w)); i++) await sleep(20)
  for (const w of want) assert.ok(frames.includes(w), `${w} in ${JSON.stringify(frames)}`)
  assert.ok(frames.some(f => f.startsWith('X|E|MESSAGE_PARSE_ERROR|')), JSON.stringify(frames))
})

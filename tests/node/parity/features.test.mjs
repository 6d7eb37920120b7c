// enabledFeatures with the real client, against a server started with features.yml beside
// this file (corestream or the reference): RPC and presence are switched off.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { sleep, connect } from '../lib/users.mjs'

async function client () {
  const c = connect()
  await c.login({})
  return c
}

test('a disabled feature is refused as an unknown topic; the others work', async () => {
  const c = await client()
  // The server answers PARSER UNKNOWN_TOPIC, for which this client has no handler: the calls
  // get no answer at all (no NO_RPC_PROVIDER, no user list).
  const answers = []
  c.rpc.make('anything', null).then(r => answers.push(r), e => answers.push(String(e)))
  c.presence.getAll().then(r => answers.push(r), e => answers.push(String(e)))
  await sleep(1000)
  assert.deepEqual(answers, [])
  await c.record.setDataWithAck('features/r', { on: true })
  assert.deepEqual(await c.record.snapshot('features/r'), { on: true })
  const heard = []
  c.event.subscribe('features/e', d => heard.push(d))
  await sleep(300)
  c.event.emit('features/e', 1)
  await sleep(300)
  assert.deepEqual(heard, [1])
})

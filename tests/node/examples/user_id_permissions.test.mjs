// examples/user_id_permissions: a user acts only on names that contain its id.
import { test, after } from 'node:test'
import assert from 'node:assert/strict'
import { client, closeAll, within, uniq } from '../client/helpers.mjs'

after(closeAll)

// The next error the client reports for `topic`, as [event, name].
function nextError (c) {
  return new Promise(resolve => c.on('error', (error, event, topic) => resolve([event, error])))
}

test('a user writes a record whose name holds its id, and another user reads it', async () => {
  const alice = await within(client({ username: 'alice' }), 5000, 'login')
  const bob = await within(client({ username: 'bob' }), 5000, 'login')
  const name = uniq('alice')
  await within(alice.record.setDataWithAck(name, { owner: 'alice' }), 5000, 'write')
  // bob may not read it: its name does not hold "bob".
  const denied = nextError(bob)
  bob.record.getRecord(name)
  const [event] = await within(denied, 5000, 'bob is denied')
  assert.equal(event, 'MESSAGE_DENIED')
  const again = await within(client({ username: 'alice' }), 5000, 'login')
  assert.deepEqual(await within(again.record.snapshot(name), 5000, 'read'), { owner: 'alice' })
})

test('a write to another user\'s record is denied and changes nothing', async () => {
  const alice = await within(client({ username: 'alice' }), 5000, 'login')
  const name = uniq('bob')
  await assert.rejects(within(alice.record.setDataWithAck(name, { owner: 'alice' }), 5000, 'write'))
  const bob = await within(client({ username: 'bob' }), 5000, 'login')
  assert.equal(await within(bob.record.has(name), 5000, 'has'), false)
})

test('events: a user emits and subscribes only on its own names; the anonymous login on none', async () => {
  const alice = await within(client({ username: 'alice' }), 5000, 'login')
  const heard = new Promise(resolve => alice.event.subscribe('chat/alice', resolve))
  await new Promise(resolve => setTimeout(resolve, 300))
  alice.event.emit('chat/alice', 'hi')
  assert.equal(await within(heard, 5000, 'own event'), 'hi')
  const denied = nextError(alice)
  alice.event.emit('chat/bob', 'hi')
  assert.equal((await within(denied, 5000, 'denied emit'))[0], 'MESSAGE_DENIED')
  const anonymous = await within(client({}), 5000, 'anonymous login')
  const refused = nextError(anonymous)
  anonymous.event.emit('chat/open', 'hi')
  assert.equal((await within(refused, 5000, 'anonymous denied'))[0], 'MESSAGE_DENIED')
})

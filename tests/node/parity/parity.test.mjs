// Behaviours where corestream once differed from deepstream 7, with the real client. Runs
// against any server started with the config.yml beside this file (corestream or the
// reference), and gives the same answers on both.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { sleep, uniq, within, connect, login } from '../lib/users.mjs'

// Which of `payloads` alice may publish on a fresh name under `prefix`, as a subscriber sees.
async function published (prefix, payloads) {
  const [alice, listener] = [await login('alice'), await login('bob')]
  const name = uniq(prefix)
  const heard = []
  listener.event.subscribe(name, d => heard.push(d))
  await sleep(400)
  for (const p of payloads) alice.event.emit(name, p)
  await sleep(500)
  return { heard, errors: alice.errors }
}

const constructs = [
  ['js/typeof', { n: 1 }, { n: '1' }],
  ['js/regex', { name: 'abc' }, { name: 'ab1' }],
  ['js/in', { token: null }, { other: 1 }],
  ['js/nullish', { level: 2 }, { level: null }],
  ['js/optional', { meta: { ok: true } }, {}],
  ['js/array', { color: 'green' }, { color: 'blue' }],
  ['js/power', { n: -4 }, { n: 3 }],
  ['js/void', { n: 0 }, { missing: 1, n: 0 }],
  ['js/instanceof', { list: [] }, { list: {} }],
  ['js/comma', { ok: true }, { ignored: true }],
  ['js/template', { n: 1 }, { n: 2 }],
  ['js/bits', { flags: 5 }, { flags: 5.5 }]
]

for (const [prefix, allowed, denied] of constructs) {
  test(`a rule with ${prefix.slice(3)} allows and denies as JavaScript does`, async () => {
    const { heard, errors } = await published(prefix, [allowed, denied])
    assert.deepEqual(heard, [allowed])
    assert.ok(errors.some(e => e.includes('MESSAGE_DENIED')), `errors: ${errors}`)
  })
}

test('a rule that throws (a property of undefined) is a permission error, not a pass', async () => {
  const { heard, errors } = await published('js/throws', [{ deep: { value: 1 } }, { shallow: 1 }])
  assert.deepEqual(heard, [{ deep: { value: 1 } }])
  // The server answers EVENT MESSAGE_PERMISSION_ERROR, which this client reports as unsolicited.
  assert.ok(errors.some(e => /MESSAGE_PERMISSION_ERROR|UNSOLICITED_MESSAGE/.test(e)), `errors: ${errors}`)
  assert.ok(!errors.some(e => e.includes('MESSAGE_DENIED')), `errors: ${errors}`)
})

test('?? and the conditional operator in a record write rule', async () => {
  const [alice, bob] = [await login('alice'), await login('bob')]
  const name = uniq('level')
  await alice.record.setDataWithAck(name, { level: 5 })
  await assert.rejects(bob.record.setDataWithAck(name, { level: 5 }), e => String(e).includes('MESSAGE_DENIED'))
  await bob.record.setDataWithAck(name, { other: true })
  assert.deepEqual(await alice.record.snapshot(name), { other: true })
})

test('a client may answer its own RPC requests', async () => {
  const c = await login('carol')
  const name = uniq('self')
  c.rpc.provide(name, (data, response) => response.send(`echo ${data}`))
  await sleep(400)
  assert.equal(await within(c.rpc.make(name, 'x'), 3000, 'rpc'), 'echo x')
})

test('a failed login stops the login deadline: a later retry still succeeds', async () => {
  const c = connect()
  await assert.rejects(within(c.login({ username: 'alice', password: 'wrong' }), 3000, 'bad login'))
  // Past unauthenticatedClientTimeout (1500 ms), counted from the connection's open.
  await sleep(2200)
  await within(c.login({ username: 'alice', password: 'secret' }), 3000, 'retry')
  assert.ok(!c.errors.some(e => e.includes('TIMEOUT')), `errors: ${c.errors}`)
})

test('presence lists users in the order they came online', async () => {
  const watcher = await login('dave')
  const users = ['grace', 'erin', 'frank']
  for (const user of users) {
    await login(user)
    await sleep(150)
  }
  const online = await within(watcher.presence.getAll(), 3000, 'getAll')
  assert.deepEqual(online.filter(u => users.includes(u)), users)
})

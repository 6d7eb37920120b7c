// File auth and Valve permissions with the real @deepstream/client. Runs against any server
// started with the config.yml beside this file (corestream or the reference).
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { sleep, uniq, within, connect, login } from '../lib/users.mjs'

test('good logins carry clientData, bad ones fail, too many close the connection', async () => {
  const alice = await within(login('alice'), 3000, 'alice login')
  assert.deepEqual(alice.clientData, { greeting: 'hello alice' })
  const c = connect()
  await assert.rejects(within(c.login({ username: 'alice', password: 'wrong' }), 3000, 'bad login'))
  await assert.rejects(within(c.login({ username: 'mallory', password: 'secret' }), 3000, 'unknown user'))
  await sleep(300)
  assert.ok(c.errors.some(e => e.includes('TOO_MANY_AUTH_ATTEMPTS')), `errors: ${c.errors}`)
})

test('users may only write their own profile; a denied write leaves the record unchanged', async () => {
  const [alice, bob] = [await login('alice'), await login('bob')]
  await alice.record.setDataWithAck('profile/alice', { name: 'Alice' })
  await assert.rejects(bob.record.setDataWithAck('profile/alice', { name: 'Mallory' }), e => String(e).includes('MESSAGE_DENIED'))
  assert.deepEqual(await bob.record.snapshot('profile/alice'), { name: 'Alice' })
  await bob.record.setDataWithAck('profile/bob', { name: 'Bob' })
  assert.deepEqual(await alice.record.snapshot('profile/bob'), { name: 'Bob' })
})

test('a rule on data and oldData: prices must be positive and never fall', async () => {
  const bob = await login('bob')
  const name = uniq('price')
  await assert.rejects(bob.record.setDataWithAck(name, { price: -1 }), e => String(e).includes('MESSAGE_DENIED'))
  await bob.record.setDataWithAck(name, { price: 10 })
  await bob.record.setDataWithAck(name, { price: 12 })
  await assert.rejects(bob.record.setDataWithAck(name, { price: 11 }), e => String(e).includes('MESSAGE_DENIED'))
  await assert.rejects(bob.record.setDataWithAck(name, 'price', 5), e => String(e).includes('MESSAGE_DENIED'))
  assert.deepEqual(await bob.record.snapshot(name), { price: 12 })
})

test('a denied read is refused', async () => {
  const bob = await login('bob')
  await assert.rejects(within(bob.record.snapshot(uniq('secret')), 3000, 'snapshot'), e => String(e).includes('MESSAGE_DENIED'))
})

test('denied subscribe and publish deliver nothing', async () => {
  const [alice, bob] = [await login('alice'), await login('bob')]
  const priv = uniq('private')
  const seen = { alice: [], bob: [] }
  alice.event.subscribe(priv, d => seen.alice.push(d))
  bob.event.subscribe(priv, d => seen.bob.push(d))
  const ro = uniq('readonly')
  alice.event.subscribe(ro, d => seen.alice.push(d))
  await sleep(400)
  bob.event.emit(priv, 'for admins')
  bob.event.emit(ro, 'nobody may publish here')
  await sleep(400)
  assert.deepEqual(seen, { alice: ['for admins'], bob: [] })
  assert.ok(bob.errors.some(e => e.includes('MESSAGE_DENIED')), `bob errors: ${bob.errors}`)
})

test('denied provide and request', async () => {
  const [alice, bob, caller] = [await login('alice'), await login('bob'), await login('bob')]
  const admin = uniq('admin')
  bob.rpc.provide(admin, (data, response) => response.send('bob'))
  await sleep(400)
  await assert.rejects(within(caller.rpc.make(admin, null), 3000, 'rpc'), e => String(e).includes('NO_RPC_PROVIDER'))
  alice.rpc.provide(admin, (data, response) => response.send('alice'))
  await sleep(400)
  assert.equal(await within(caller.rpc.make(admin, null), 3000, 'rpc'), 'alice')
  const restricted = uniq('restricted')
  alice.rpc.provide(restricted, (data, response) => response.send('never'))
  await sleep(400)
  await assert.rejects(within(caller.rpc.make(restricted, null), 3000, 'rpc'), e => String(e).includes('MESSAGE_DENIED'))
})

test('cross-record rules read other records', async () => {
  const [alice, bob] = [await login('alice'), await login('bob')]
  await alice.record.setDataWithAck('settings/gate', { open: false })
  const gated = uniq('gated')
  await assert.rejects(bob.record.setDataWithAck(gated, { v: 1 }), e => String(e).includes('MESSAGE_DENIED'))
  await alice.record.setDataWithAck('settings/gate', { open: true })
  await bob.record.setDataWithAck(gated, { v: 2 })
  assert.deepEqual(await alice.record.snapshot(gated), { v: 2 })

  await alice.record.setDataWithAck('settings/announcers', { names: ['alice'] })
  const channel = uniq('announce')
  const heard = []
  const listener = await login('bob')
  listener.event.subscribe(channel, d => heard.push(d))
  await sleep(400)
  bob.event.emit(channel, 'from bob')
  alice.event.emit(channel, 'from alice')
  await sleep(400)
  assert.deepEqual(heard, ['from alice'])
})

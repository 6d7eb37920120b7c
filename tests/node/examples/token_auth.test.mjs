// examples/token_auth: only the preconfigured token logs in (TOKEN names it).
import { test, after } from 'node:test'
import assert from 'node:assert/strict'
import { DeepstreamClient } from '@deepstream/client'
import { client, closeAll, within, uniq, URL } from '../client/helpers.mjs'

after(closeAll)

const TOKEN = process.env.TOKEN

// The login's outcome without the helpers' retries: [ok, clientData].
function attempt (auth) {
  const c = new DeepstreamClient(URL, { offlineEnabled: false, maxReconnectAttempts: 0 })
  c.on('error', () => {})
  return new Promise(resolve => {
    c.login(auth, (ok, data) => { c.close(); resolve([ok, data]) })
  })
}

test('the token logs in, with the client data the plugin gave', async () => {
  const [ok, data] = await within(attempt({ token: TOKEN }), 5000, 'login')
  assert.equal(ok, true)
  assert.deepEqual(data, { admittedBy: 'token_auth' })
})

test('another token, a username or nothing is refused with the plugin\'s reason', async () => {
  for (const auth of [{ token: TOKEN + 'x' }, { username: 'alice', password: 'pw' }, {}]) {
    const [ok, data] = await within(attempt(auth), 5000, 'refusal')
    assert.equal(ok, false, JSON.stringify(auth))
    assert.deepEqual(data, { reason: { error: 'unknown token' } })
  }
})

test('a logged-in holder works as any client: a record written is read back by another', async () => {
  const writer = await within(client({ token: TOKEN }), 5000, 'writer login')
  const reader = await within(client({ token: TOKEN }), 5000, 'reader login')
  const name = uniq('token-auth')
  await writer.record.setDataWithAck(name, { by: 'holder' })
  assert.deepEqual(await reader.record.snapshot(name), { by: 'holder' })
  // Presence shows the plugin's user id (one's own connections are not listed to it).
  const watcher = await within(client({ token: TOKEN }), 5000, 'third login')
  assert.ok((await watcher.presence.getAll()).length === 0, 'only the holder is online')
})

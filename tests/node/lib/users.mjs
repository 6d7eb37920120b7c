// Shared by the suites that log users in (permissions, parity, features): clients of the real
// @deepstream/client that record their errors, and are all closed when the file's tests end.
import { after } from 'node:test'
import { createRequire } from 'node:module'

const require = createRequire(`${process.env.DS_CLIENT_HOME}/package.json`)
const { DeepstreamClient } = require('@deepstream/client')
const URL = process.env.DS_URL
const open = []
after(() => { while (open.length) open.pop().close() })

export const sleep = ms => new Promise(resolve => setTimeout(resolve, ms))
export const uniq = prefix => `${prefix}/${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`
export const within = (promise, ms, what) => Promise.race([promise, sleep(ms).then(() => { throw new Error(`timed out: ${what}`) })])

// A client that is not logged in yet; `errors` collects what it reports.
export function connect () {
  const c = new DeepstreamClient(URL, { offlineEnabled: false, maxReconnectAttempts: 0 })
  c.errors = []
  c.on('error', (error, event) => c.errors.push(String(event || error)))
  open.push(c)
  return c
}

// A client logged in with a username and password; `clientData` is the login's answer.
export async function login (username, password = 'secret') {
  const c = connect()
  const clientData = await within(c.login({ username, password }), 3000, `${username} login`)
  return Object.assign(c, { clientData })
}
